"""Model registry commands: `models` (list, show) and `models alias set|history|rollback|delete`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from synthjobs_client import output
from synthjobs_client.output import EXIT_OK, JsonFlag, show

app = typer.Typer(
    help="Trained models and their aliases. Without a sub-command: list them.",
    invoke_without_command=True,
    epilog="Examples:\n\n  synthjobs models --name digits-cvae\n\n"
    "  synthjobs models show digits-cvae@champion --json\n\n"
    "  synthjobs models alias set digits-cvae champion --version 3 --reason 'better TSTR'\n\n"
    "  synthjobs models alias history digits-cvae champion\n\n"
    "  synthjobs models alias rollback digits-cvae champion",
)
alias_app = typer.Typer(
    help="Point a name@alias (e.g. champion) at a version, and undo it.",
    no_args_is_help=True,
    epilog="Examples:\n\n  synthjobs models alias set digits-cvae champion --version 3\n\n"
    "  synthjobs models alias history digits-cvae champion\n\n"
    "  synthjobs models alias rollback digits-cvae champion",
)
app.add_typer(alias_app, name="alias")

Name = Annotated[str, typer.Argument(help="The model name, e.g. digits-cvae.", show_default=False)]
Alias = Annotated[str, typer.Argument(help="The alias, e.g. champion.", show_default=False)]


def _model_line(m: dict[str, Any]) -> str:
    metrics = m.get("metrics") or {}
    aliases = f"  @{',@'.join(m['aliases'])}" if m.get("aliases") else ""
    return (
        f"{m['id']}  {m['name']}:{m['version']}  "
        f"-ELBO {metrics.get('heldout_neg_elbo', float('nan')):.2f}  "
        f"cond.acc {metrics.get('conditional_accuracy', float('nan')):.1%}{aliases}"
    )


@app.callback()
def models(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="Only versions of this name.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List trained models, newest first (or act on one with a sub-command)."""
    if ctx.invoked_subcommand is not None:
        return
    with output.client_for(ctx.obj) as client:
        items = client.models(name=name)
    show(items, lambda ms: output.rows(ms, _model_line, "no models"), as_json=as_json)


@app.command("list", epilog="Example: synthjobs models list --name digits-cvae --json")
def list_models(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="Only versions of this name.")] = None,
    as_json: JsonFlag = False,
) -> int:
    """List trained models, newest first."""
    with output.client_for(ctx.obj) as client:
        items = client.models(name=name)
    show(items, lambda ms: output.rows(ms, _model_line, "no models"), as_json=as_json)
    return EXIT_OK


@app.command("show", epilog="Example: synthjobs models show digits-cvae@champion --json")
def show_model(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="A model id, name:version or name@alias.", show_default=False)],
    as_json: JsonFlag = False,
) -> int:
    """Show one model: hyperparameters, metrics, dataset, aliases."""
    with output.client_for(ctx.obj) as client:
        show(client.model(model), _model_line, as_json=as_json)
    return EXIT_OK


def _alias_line(a: dict[str, Any]) -> str:
    return f"{a['name']}@{a['alias']} -> {a['name']}:{a['version']} ({a['model_id']})"


@alias_app.command("set", epilog="Example: synthjobs models alias set digits-cvae champion --version 3")
def set_alias(
    ctx: typer.Context,
    name: Name,
    alias: Alias,
    version: Annotated[int | None, typer.Option(min=1, help="The version to point at.")] = None,
    model_id: Annotated[str | None, typer.Option(help="Or the model id to point at.")] = None,
    reason: Annotated[str, typer.Option(help="Why; kept in the alias history.")] = "",
    as_json: JsonFlag = False,
) -> int:
    """Point name@alias at one version of the name (by --version or --model-id)."""
    if (version is None) == (model_id is None):
        raise typer.BadParameter("give one of --version or --model-id", param_hint="--version")
    with output.client_for(ctx.obj) as client:
        moved = client.set_alias(name, alias, version=version, model_id=model_id, reason=reason)
    show(moved, _alias_line, as_json=as_json)
    return EXIT_OK


@alias_app.command("history", epilog="Example: synthjobs models alias history digits-cvae champion --json")
def alias_history(ctx: typer.Context, name: Name, alias: Alias, as_json: JsonFlag = False) -> int:
    """Every move of name@alias, newest first: from which model to which, by whom, why."""
    with output.client_for(ctx.obj) as client:
        events = client.alias_history(name, alias)

    def line(e: dict[str, Any]) -> str:
        why = f"  ({e['reason']})" if e.get("reason") else ""
        return f"{e['at']}  {e['from_model_id'] or '-'} -> {e['to_model_id'] or '-'}  by {e['actor']}{why}"

    show(events, lambda es: output.rows(es, line, "no history"), as_json=as_json)
    return EXIT_OK


@alias_app.command("rollback", epilog="Example: synthjobs models alias rollback digits-cvae champion")
def rollback_alias(ctx: typer.Context, name: Name, alias: Alias, as_json: JsonFlag = False) -> int:
    """Point name@alias back at the version it pointed at before its last move."""
    with output.client_for(ctx.obj) as client:
        show(client.rollback_alias(name, alias), _alias_line, as_json=as_json)
    return EXIT_OK


@alias_app.command("delete", epilog="Example: synthjobs models alias delete digits-cvae challenger")
def delete_alias(ctx: typer.Context, name: Name, alias: Alias) -> int:
    """Remove name@alias; jobs already submitted keep the model they were pinned to."""
    with output.client_for(ctx.obj) as client:
        client.delete_alias(name, alias)
    print(f"{name}@{alias} removed")
    return EXIT_OK
