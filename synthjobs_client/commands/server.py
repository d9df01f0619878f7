"""The service's own commands (`api`, `worker`, `beat`, `migrate`, `tick`, `reconcile`, `admin`, `demo`).

Each runs `synthjobs.server_cli.run_<name>`, imported by name only when the command runs: the job commands
never load the server side, and a client-only install (`pip install synthjobs`) says what to install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Annotated, Any

import typer

from synthjobs_client.output import EXIT_USAGE, JsonFlag

admin_app = typer.Typer(
    help="Administration with direct database access (tokens).",
    no_args_is_help=True,
    epilog="Examples:\n\n  synthjobs admin create-token --tenant acme --label 'nightly CI'\n\n"
    "  synthjobs admin revoke-token sj_...",
)
SERVICE = "Service"  # the help panel these commands are listed under


def run_server(command: str, function: str, **args: Any) -> int:
    """Call `synthjobs.server_cli.<function>` with `args` as the parsed arguments it expects."""
    try:
        server = importlib.import_module("synthjobs.server_cli")
    except ImportError as exc:  # a client-only install: `pip install synthjobs`
        print(
            f"error: `synthjobs {command}` runs the service, which is not installed here ({exc}); "
            "install it with: pip install 'synthjobs[server]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    result: int = getattr(server, function)(argparse.Namespace(command=command, **args))
    return result


Loglevel = Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")]


def api(
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: $SYNTHJOBS_API_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: $SYNTHJOBS_API_PORT).")] = None,
) -> int:
    """Run the HTTP API (migrates the database first)."""
    return run_server("api", "run_api", host=host, port=port)


def worker(
    name: Annotated[str | None, typer.Option(help="Worker node name (default: Celery's).")] = None,
    loglevel: Loglevel = "INFO",
    queues: Annotated[
        str | None,
        typer.Option(
            help="Lanes to consume: train, sample or train,sample (default: $SYNTHJOBS_WORKER_QUEUES)."
        ),
    ] = None,
) -> int:
    """Run a Celery worker for training and sampling jobs (both lanes unless --queues names one)."""
    return run_server("worker", "run_worker", name=name, loglevel=loglevel, queues=queues)


def migrate() -> int:
    """Bring the database to the latest schema."""
    return run_server("migrate", "run_migrate")


def beat(loglevel: Loglevel = "INFO") -> int:
    """Send the schedule tick every SYNTHJOBS_TICK_INTERVAL seconds."""
    return run_server("beat", "run_beat", loglevel=loglevel)


def tick(
    now: Annotated[str | None, typer.Option(help="ISO time with offset to act as the clock (tests).")] = None,
    as_json: JsonFlag = False,
) -> int:
    """Fire the schedules due now (or at --now) once, and exit."""
    return run_server("tick", "run_tick", now=now, json=as_json)


def reconcile(as_json: JsonFlag = False) -> int:
    """Requeue jobs whose worker or message was lost (one pass)."""
    return run_server("reconcile", "run_reconcile", json=as_json)


def demo(
    epochs: Annotated[int, typer.Option(min=1)] = 100,
    per_class: Annotated[int, typer.Option(min=1)] = 1000,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    serve: Annotated[
        bool, typer.Option("--serve", help="Keep the API, dashboard and worker up afterwards (Ctrl-C stops).")
    ] = False,
) -> int:
    """Run the whole pipeline on this machine and print where the results are (and the dashboard's URL)."""
    return run_server("demo", "run_demo", epochs=epochs, per_class=per_class, seed=seed, serve=serve)


@admin_app.command(
    "create-token", epilog="Example: synthjobs admin create-token --tenant acme --label 'nightly CI'"
)
def create_token(
    tenant: Annotated[str, typer.Option(help="Tenant name: a-z, 0-9, _ and -.", show_default=False)],
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
    as_json: JsonFlag = False,
) -> int:
    """Make an API token for a tenant (shown once)."""
    return run_server("admin", "run_create_token", tenant=tenant, label=label, json=as_json)


@admin_app.command("revoke-token", epilog="Example: synthjobs admin revoke-token sj_...")
def revoke_token(
    token: Annotated[str, typer.Argument(help="The token to revoke.", show_default=False)],
) -> int:
    """Revoke an API token."""
    return run_server("admin", "run_revoke_token", token=token)


EXAMPLES = {
    "api": "synthjobs api --port 8000",
    "worker": "synthjobs worker --name gpu0",
    "migrate": "synthjobs migrate",
    "beat": "synthjobs beat",
    "tick": "synthjobs tick --now 2026-11-28T03:00:30+01:00 --json",
    "reconcile": "synthjobs reconcile --json",
    "demo": "synthjobs demo --epochs 5 --per-class 100",
}


def register(root: typer.Typer) -> None:
    """Add the service commands to `root`, under their own help panel."""
    for command in (api, worker, migrate, beat, tick, reconcile, demo):
        name = command.__name__
        root.command(name, rich_help_panel=SERVICE, epilog=f"Example: {EXAMPLES[name]}")(command)
    root.add_typer(admin_app, name="admin", rich_help_panel=SERVICE)
