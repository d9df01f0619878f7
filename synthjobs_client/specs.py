"""The CLI's short spellings of request values, turned into the API's JSON.

`--dataset digits | mnist:/data/torchvision | s3://bucket/prefix | uploaded:<id> | @spec.json | '{...}'`,
`--per-class 1000 | 3=500,8=500`, `--distribution uniform | 3=0.7,8=0.3`. The API validates the result; these
only spell it, so a new dataset kind is usable at once through `@spec.json` or inline JSON.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer

TORCHVISION = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "cifar10": "CIFAR10"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

DATASET_HELP = (
    "digits (built in); mnist|fashionmnist|cifar10:ROOT (torchvision, under the data root); "
    "s3://bucket/prefix or file:///path (image folder); uploaded:ID (from `datasets upload`); "
    "@spec.json or inline JSON for any dataset spec."
)


def load_json(value: str, what: str) -> Any:
    """`@file.json` read from disk, or the text itself parsed as JSON."""
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=what) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint=what) from exc


def parse_dataset(value: str) -> str | dict[str, Any]:
    """A `--dataset` value as the API's `dataset` field."""
    if value.startswith(("@", "{")):
        spec = load_json(value, "--dataset")
        if not isinstance(spec, str | dict):
            raise typer.BadParameter("a dataset spec is a JSON object", param_hint="--dataset")
        return spec
    if value.startswith(("s3://", "file://")):
        return {"kind": "image_folder", "url": value}
    prefix, sep, rest = value.partition(":")
    if sep and prefix.lower() in TORCHVISION:
        return {"kind": "torchvision", "name": TORCHVISION[prefix.lower()], "root": rest}
    if sep and prefix == "uploaded":
        return {"kind": "uploaded", "id": rest}
    if UUID.match(value):
        return {"kind": "uploaded", "id": value}
    if value == "digits":
        return value
    raise typer.BadParameter(f"{value!r} is none of: {DATASET_HELP}", param_hint="--dataset")


def _pairs(value: str, what: str, number: type[int] | type[float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        key, sep, amount = part.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            out[key.strip()] = number(amount)
        except ValueError:
            raise typer.BadParameter(f"{part!r} is not CLASS=NUMBER", param_hint=what) from None
    if not out:
        raise typer.BadParameter("empty", param_hint=what)
    return out


def parse_counts(value: str) -> int | dict[str, int]:
    """`1000` (every class) or `3=500,8=200` (class name or id → count)."""
    try:
        return int(value)
    except ValueError:
        return _pairs(value, "--per-class", int)  # type: ignore[return-value]


def parse_distribution(value: str) -> str | dict[str, float]:
    """`uniform`, `3=0.7,8=0.3` or JSON (`@dist.json`, `{"3": 0.7}`): proportions of `--total`."""
    if value == "uniform":
        return value
    if value.startswith(("@", "{")):
        spec = load_json(value, "--distribution")
        if not isinstance(spec, dict):
            raise typer.BadParameter("a distribution is a JSON object", param_hint="--distribution")
        return spec
    return _pairs(value, "--distribution", float)
