"""The server side of the `synthjobs` command: api, worker, migrate, beat, tick, reconcile, admin, demo.

`synthjobs_client.cli` parses the command line and imports this module only when one of these commands runs,
so the job commands (train, status, ...) never load SQLAlchemy, Celery or boto3.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from synthjobs.malloc import tune_malloc
from synthjobs.settings import get_settings
from synthjobs_client.cli import EXIT_OK, EXIT_USAGE, emit


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    from synthjobs.errors import ConfigurationError
    from synthjobs.ledger.migrate import upgrade_database
    from synthjobs.ledger.tokens import TOKEN_FILE, local_token
    from synthjobs.rules.artifacts import check_signing_key

    settings = get_settings()
    try:
        check_signing_key(settings)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings.ensure_home()
    upgrade_database(settings.resolved_database_url())
    if settings.admin_token is None:
        # The embedded default: a local admin token the CLI and client on this machine pick up by themselves.
        os.environ["SYNTHJOBS_ADMIN_TOKEN"] = str(local_token(settings, create=True))
        get_settings.cache_clear()
        print(f"API token: {settings.home.resolve() / TOKEN_FILE} (used by the CLI on this machine)")
    host, port = args.host or settings.api_host, args.port or settings.api_port
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, log_level="info")
    return EXIT_OK


def run_worker(args: argparse.Namespace) -> int:
    """Run a Celery worker in this process (solo pool: no fork after CUDA is initialised)."""
    from synthjobs.broker.queue import lane_queue, parse_lanes

    settings = get_settings()
    try:
        lanes = parse_lanes(args.queues or settings.worker_queues)
    except ValueError as exc:
        print(f"error: --queues: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings.ensure_home()
    threads = str(settings.resolved_torch_threads())
    # OpenMP reads these once at start-up, before torch.set_num_threads can act.
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    os.environ.setdefault("MKL_NUM_THREADS", threads)
    tune_malloc()  # before torch allocates: fixed mmap/trim thresholds (synthjobs.malloc says why)
    argv = [
        "worker",
        "--pool",
        "solo",
        "--queues",
        ",".join(lane_queue(settings, lane) for lane in lanes),
        "--loglevel",
        args.loglevel,
        "--without-gossip",
        "--without-mingle",
    ]
    if args.name:
        argv += ["--hostname", f"{args.name}@%h"]
    run_celery(argv, "worker.celery_app")
    return EXIT_OK  # pragma: no cover - Celery exits the process


def run_celery(argv: list[str], app_module: str) -> None:
    """Run `celery ARGV` in this process, its app imported first from the code this command runs.

    Celery imports its app "from the current directory": it puts the cwd first on sys.path while it does.
    A `synthjobs/` folder there (the clone, seen from the folder above it) would then shadow the installed
    package and the worker would die on start. So the app module and the modules it includes are imported
    here first, with the cwd left off sys.path unless this `synthjobs` itself came from there (a checkout
    run in place); Celery then finds them loaded.
    """
    import importlib

    from celery.__main__ import main as celery_main

    import synthjobs

    source = Path(synthjobs.__file__).resolve().parent.parent
    cwd = Path.cwd().resolve()
    others = [entry for entry in sys.path if Path(entry or ".").resolve() not in (cwd, source)]
    sys.path[:] = [str(source), *others]
    app = importlib.import_module(app_module).app
    for module in app.conf.include or ():
        importlib.import_module(module)
    sys.argv = ["celery", "-A", app_module, *argv]
    celery_main()


def run_migrate(args: argparse.Namespace) -> int:
    from synthjobs.ledger.migrate import upgrade_database

    settings = get_settings()
    settings.ensure_home()
    upgrade_database(settings.resolved_database_url())
    print(f"database at the latest schema: {settings.resolved_database_url()}")
    return EXIT_OK


def run_beat(args: argparse.Namespace) -> int:
    """Run Celery beat in this process, sending the tick task (schedules themselves live in SQL)."""
    settings = get_settings()
    settings.ensure_home()
    schedule = settings.make_home() / "beat-schedule"  # beat's own bookkeeping; home exists in production too
    run_celery(["beat", "--loglevel", args.loglevel, "--schedule", str(schedule)], "synthjobs.broker.beat")
    return EXIT_OK  # pragma: no cover - Celery exits the process


def run_tick(args: argparse.Namespace) -> int:
    from datetime import datetime

    from synthjobs.broker.queue import make_sender
    from synthjobs.maintenance.tick import tick

    now = datetime.fromisoformat(args.now) if args.now else None
    if now is not None and now.tzinfo is None:
        print("error: --now needs a UTC offset, e.g. 2026-11-27T03:00:00+00:00", file=sys.stderr)
        return EXIT_USAGE
    created = tick(get_settings(), make_sender(get_settings()), now=now, fired_by="synthjobs tick")
    emit(args, created, lambda ids: "\n".join(ids) or "nothing due")
    return EXIT_OK


def run_reconcile(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from synthjobs.broker.queue import make_sender
    from synthjobs.maintenance.reconcile import reconcile

    report = asdict(reconcile(get_settings(), make_sender(get_settings())))
    emit(
        args,
        report,
        lambda r: "\n".join(
            f"{k}: {len(v)} {' '.join(v)}" if isinstance(v, list) else f"{k}: {v}" for k, v in r.items()
        ),
    )
    return EXIT_OK


def run_create_token(args: argparse.Namespace) -> int:
    import re

    from synthjobs.ledger.db import session_scope
    from synthjobs.ledger.migrate import upgrade_database
    from synthjobs.ledger.tokens import TENANT_PATTERN, create_token

    if not re.match(TENANT_PATTERN, args.tenant):
        print(
            "error: a tenant name is 1-100 of a-z, 0-9, _ and -, starting with a letter or digit",
            file=sys.stderr,
        )
        return EXIT_USAGE
    settings = get_settings()
    upgrade_database(settings.resolved_database_url())
    with session_scope(settings.resolved_database_url()) as session:
        token = create_token(session, args.tenant, args.label)
    emit(
        args, {"tenant": args.tenant, "token": token}, lambda r: f"{r['token']}\n(shown once; keep it secret)"
    )
    return EXIT_OK


def run_revoke_token(args: argparse.Namespace) -> int:
    from synthjobs.ledger.db import session_scope
    from synthjobs.ledger.tokens import revoke_token

    with session_scope(get_settings().resolved_database_url()) as session:
        revoked = revoke_token(session, args.token)
    print("revoked" if revoked else "no such active token", file=sys.stdout if revoked else sys.stderr)
    return EXIT_OK if revoked else EXIT_USAGE


def run_demo(args: argparse.Namespace) -> int:
    from synthjobs.devtools.demo import run

    return run(
        epochs=args.epochs, per_class=args.per_class, seed=args.seed, serve=getattr(args, "serve", False)
    )
