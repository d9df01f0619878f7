"""Dataset commands: `datasets upload|list|show` (uploaded .npz files a training job can name)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synthjobs_client import output
from synthjobs_client.output import EXIT_OK, JsonFlag, show

app = typer.Typer(
    help="Upload .npz datasets and list them; train on one with --dataset uploaded:ID.",
    no_args_is_help=True,
    epilog="Examples:\n\n  synthjobs datasets upload shapes.npz --name shapes\n\n"
    "  synthjobs datasets list --json",
)


def _line(d: dict[str, Any]) -> str:
    return "  ".join(str(d.get(k, "")) for k in ("id", "name", "num_images", "bytes", "created_at"))


@app.command("upload", epilog="Example: synthjobs datasets upload shapes.npz --name shapes --json")
def upload(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="An .npz file.", show_default=False),
    ],
    name: Annotated[str | None, typer.Option(help="A name to find it by (default: the file's).")] = None,
    as_json: JsonFlag = False,
) -> int:
    """Upload an .npz dataset: uint8 `images` (N×H×W or N×H×W×C), integer `labels`, optional `class_names`."""
    with output.client_for(ctx.obj) as client:
        dataset = client.upload_dataset(path, name=name)
    show(
        dataset,
        lambda d: f"{_line(d)}\ntrain on it: synthjobs train --dataset uploaded:{d['id']}",
        as_json=as_json,
    )
    return EXIT_OK


@app.command("list", epilog="Example: synthjobs datasets list --json")
def list_datasets(ctx: typer.Context, as_json: JsonFlag = False) -> int:
    """List the uploaded datasets."""
    with output.client_for(ctx.obj) as client:
        items = client.datasets()
    show(items, lambda ds: output.rows(ds, _line, "no datasets"), as_json=as_json)
    return EXIT_OK


@app.command("show", epilog="Example: synthjobs datasets show DATASET_ID --json")
def show_dataset(
    ctx: typer.Context,
    dataset_id: Annotated[str, typer.Argument(help="The dataset's id.", show_default=False)],
    as_json: JsonFlag = False,
) -> int:
    """Show one uploaded dataset."""
    with output.client_for(ctx.obj) as client:
        show(client.dataset(dataset_id), _line, as_json=as_json)
    return EXIT_OK
