"""What every CLI command shares: the exit codes, the client it talks through, and how it prints.

Human text by default, JSON with `--json` (on stdout, one document); errors go to stderr as `error: ...`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from synthjobs_client import config
from synthjobs_client.client import Client

# README's "CLI for automation" promises these; scripts branch on them.
EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_TIMEOUT = 0, 1, 2, 3, 4

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@dataclass(frozen=True)
class Options:
    """The options given before the command (`synthjobs --api-url URL COMMAND`)."""

    api_url: str | None = None


def client_for(options: Options | None) -> Client:
    """A client for the API the command line names (`--api-url`, else `$SYNTHJOBS_API_URL`)."""
    url = options.api_url if options is not None and options.api_url else config.api_url()
    return Client(url, token=config.client_token())


def show(value: Any, human: Callable[[Any], str], *, as_json: bool) -> None:
    """Print `value` as JSON with `--json`, else its human form."""
    print(json.dumps(value, indent=2, default=str) if as_json else human(value))


def emit(args: Any, value: Any, human: Callable[[Any], str]) -> None:
    """`show` for a caller holding parsed arguments with a `json` attribute (the server commands)."""
    show(value, human, as_json=bool(getattr(args, "json", False)))


def describe(job: dict[str, Any]) -> str:
    """A job in a few human lines."""
    lines = [f"job {job['id']}  {job['kind']}  {job['state']}  {job['phase']}  {job['progress']:.0%}"]
    wait = job.get("wait")
    if wait:
        place = f" (position {wait['position']})" if wait.get("position") else ""
        lines.append(f"waiting: {wait['reason']}{place}")
    if job.get("eta_seconds") is not None:
        lines.append(f"eta: {format_seconds(float(job['eta_seconds']))}")
    if job.get("error"):
        lines.append(f"error: {job['error']}")
    if job.get("result"):
        lines.append("result: " + json.dumps(job["result"], default=str)[:2000])
    return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    """`42s`, `3m 20s`, `2h 05m`: an ETA a person reads at a glance."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def rows(items: list[dict[str, Any]], line: Callable[[dict[str, Any]], str], empty: str) -> str:
    """One line per item, or `empty` for none."""
    return "\n".join(line(item) for item in items) or empty
