"""The `synthjobs` command: run the service's processes, and drive the API over HTTP.

Exit codes: 0 success; 1 the job failed or was cancelled; 2 usage error or rejected request;
3 the API cannot be reached; 4 timed out waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from synthjobs.client import (
    APIUnreachable,
    Client,
    ClientError,
    DownloadError,
    JobFailed,
    JobNotFinished,
    WaitTimeout,
)
from synthjobs.ledger.tokens import client_token
from synthjobs.settings import get_settings

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_TIMEOUT = 0, 1, 2, 3, 4

EPILOG = """examples:
  synthjobs demo                                 train on digits and sample from it, all on this machine
  synthjobs train --epochs 30 --wait             submit a training job and wait for it
  synthjobs sample digits-cvae:1 --per-class 1000 --wait
  synthjobs status JOB_ID --json
  synthjobs download JOB_ID ./out                 every output, shards checked against the manifest's sha256
  synthjobs list --state RUNNING
  synthjobs admin create-token --tenant acme      a token for a team (needs database access; shown once)
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
        return result
    except APIUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JobFailed as exc:
        emit(args, exc.job, lambda job: f"job {job['id']} {job['state']}: {job.get('error')}")
        return EXIT_JOB_FAILED
    except WaitTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthjobs",
        description="Train class-conditional VAEs and bulk-generate labelled synthetic data.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--api-url", default=None, help="API base URL (default: $SYNTHJOBS_API_URL)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_service_commands(commands)
    _add_job_commands(commands)
    return parser


def _add_service_commands(commands: Any) -> None:
    api = commands.add_parser("api", help="run the HTTP API (migrates the database first)")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.set_defaults(handler=run_api)

    worker = commands.add_parser("worker", help="run a Celery worker for training and sampling jobs")
    worker.add_argument("--name", default=None, help="worker node name (default: Celery's)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(handler=run_worker)

    migrate = commands.add_parser("migrate", help="bring the database to the latest schema")
    migrate.set_defaults(handler=run_migrate)

    beat = commands.add_parser("beat", help="send the schedule tick every SYNTHJOBS_TICK_INTERVAL seconds")
    beat.add_argument("--loglevel", default="INFO")
    beat.set_defaults(handler=run_beat)

    tick = commands.add_parser("tick", help="fire the schedules due now (or at --now) once, and exit")
    tick.add_argument("--now", default=None, help="ISO time with offset to act as the clock (for tests)")
    tick.add_argument("--json", action="store_true", help="print machine-readable JSON")
    tick.set_defaults(handler=run_tick)

    reconcile = commands.add_parser(
        "reconcile", help="requeue jobs whose worker or message was lost (one pass)"
    )
    reconcile.add_argument("--json", action="store_true", help="print machine-readable JSON")
    reconcile.set_defaults(handler=run_reconcile)

    admin = commands.add_parser("admin", help="administration with direct database access")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    create = admin_commands.add_parser("create-token", help="make an API token for a tenant (shown once)")
    create.add_argument("--tenant", required=True, help="tenant name: a-z, 0-9, _ and -")
    create.add_argument("--label", default="", help="what the token is for")
    create.add_argument("--json", action="store_true", help="print machine-readable JSON")
    create.set_defaults(handler=run_create_token)
    revoke = admin_commands.add_parser("revoke-token", help="revoke an API token")
    revoke.add_argument("token")
    revoke.set_defaults(handler=run_revoke_token)

    demo = commands.add_parser(
        "demo", help="run the whole pipeline on this machine and print where results are"
    )
    demo.add_argument("--epochs", type=int, default=30)
    demo.add_argument("--per-class", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=run_demo)


def _add_job_commands(commands: Any) -> None:
    train = commands.add_parser("train", help="submit a training job")
    train.add_argument("--dataset", default="digits")
    train.add_argument("--model-name", default=None)
    train.add_argument("--conditioning", choices=["concat", "additive"], default=None)
    for flag in ("epochs", "batch-size", "latent-dim", "hidden-dim"):
        train.add_argument(f"--{flag}", type=int, default=None)
    for flag in ("learning-rate", "beta"):
        train.add_argument(f"--{flag}", type=float, default=None)
    train.add_argument("--seed", type=int, default=0)
    _add_output_flags(train, waitable=True)
    train.set_defaults(handler=submit_train)

    sample = commands.add_parser("sample", help="submit a sampling job from a trained model")
    sample.add_argument("model", help="model id or name:version")
    sample.add_argument("--per-class", type=int, required=True)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--shard-size", type=int, default=None)
    _add_output_flags(sample, waitable=True)
    sample.set_defaults(handler=submit_sample)

    status = commands.add_parser("status", help="show a job")
    status.add_argument("job_id")
    _add_output_flags(status)
    status.set_defaults(handler=show_status)

    wait = commands.add_parser("wait", help="wait for a job; exit 0 on success, 1 on failure")
    wait.add_argument("job_id")
    wait.add_argument("--timeout", type=float, default=None)
    _add_output_flags(wait)
    wait.set_defaults(handler=wait_job)

    listing = commands.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--state", default=None)
    listing.add_argument("--kind", default=None)
    listing.add_argument("--limit", type=int, default=20)
    _add_output_flags(listing)
    listing.set_defaults(handler=list_jobs)

    cancel = commands.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id")
    _add_output_flags(cancel)
    cancel.set_defaults(handler=cancel_job)

    download = commands.add_parser("download", help="download a job's outputs, verified against its manifest")
    download.add_argument("job_id")
    download.add_argument("dest", help="folder to write into (created if needed)")
    _add_output_flags(download)
    download.set_defaults(handler=download_job)

    models = commands.add_parser("models", help="list trained models")
    models.add_argument("--name", default=None)
    _add_output_flags(models)
    models.set_defaults(handler=list_models)


def _add_output_flags(parser: argparse.ArgumentParser, waitable: bool = False) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    if waitable:
        parser.add_argument("--wait", action="store_true", help="wait for the job to finish")
        parser.add_argument("--timeout", type=float, default=None)


def client_for(args: argparse.Namespace) -> Client:
    settings = get_settings()
    return Client(args.api_url or settings.api_url, token=client_token(settings))


def emit(args: argparse.Namespace, value: Any, human: Callable[[Any], str]) -> None:
    """Print `value` as JSON with --json, else its human form."""
    print(json.dumps(value, indent=2, default=str) if getattr(args, "json", False) else human(value))


def describe(job: dict[str, Any]) -> str:
    """A job in a few human lines."""
    lines = [f"job {job['id']}  {job['kind']}  {job['state']}  {job['phase']}  {job['progress']:.0%}"]
    if job.get("error"):
        lines.append(f"error: {job['error']}")
    if job.get("result"):
        lines.append("result: " + json.dumps(job["result"], default=str)[:2000])
    return "\n".join(lines)


def progress_printer(stream: Any = None) -> Callable[[dict[str, Any]], None]:
    """A progress bar on a terminal; one line per change otherwise (logs, CI)."""
    stream = stream or sys.stderr
    tty = stream.isatty()
    last: list[Any] = [None]

    def show(job: dict[str, Any]) -> None:
        state = (job["state"], job["phase"], round(job["progress"], 2))
        if state == last[0]:
            return
        last[0] = state
        if tty:
            filled = int(30 * job["progress"])
            stream.write(
                f"\r[{'#' * filled}{'.' * (30 - filled)}] {job['progress']:4.0%} {job['phase'][:40]:40}"
            )
            if job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                stream.write("\n")
        else:
            stream.write(f"{job['state']} {job['progress']:.0%} {job['phase']}\n")
        stream.flush()

    return show


def _finish_submit(args: argparse.Namespace, client: Client, job: dict[str, Any]) -> int:
    if args.wait:
        job = client.wait(
            job["id"], timeout=args.timeout, on_progress=None if args.json else progress_printer()
        )
    emit(args, job, describe)
    return EXIT_OK


def submit_train(args: argparse.Namespace) -> int:
    hyper = {
        key: getattr(args, key)
        for key in (
            "conditioning",
            "epochs",
            "batch_size",
            "latent_dim",
            "hidden_dim",
            "learning_rate",
            "beta",
        )
        if getattr(args, key) is not None
    }
    body: dict[str, Any] = {"dataset": args.dataset, "hyperparameters": hyper, "seed": args.seed}
    if args.model_name:
        body["model_name"] = args.model_name
    with client_for(args) as client:
        return _finish_submit(args, client, client.submit_train(body))


def submit_sample(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "model": args.model,
        "per_class": args.per_class,
        "seed": args.seed,
        "temperature": args.temperature,
    }
    if args.shard_size:
        body["shard_size"] = args.shard_size
    with client_for(args) as client:
        return _finish_submit(args, client, client.submit_sample(body))


def show_status(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        emit(args, client.get(args.job_id), describe)
    return EXIT_OK


def wait_job(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        on_progress = None if args.json else progress_printer()
        emit(args, client.wait(args.job_id, timeout=args.timeout, on_progress=on_progress), describe)
    return EXIT_OK


def cancel_job(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        emit(args, client.cancel(args.job_id), describe)
    return EXIT_OK


def download_job(args: argparse.Namespace) -> int:
    """Exit 1 for a failed or cancelled job (it has no outputs) or a shard unlike the manifest's, 2 for a
    job not finished yet."""
    with client_for(args) as client:
        try:
            paths = client.download(args.job_id, args.dest)
        except JobFailed as exc:
            reason = f": {exc.job['error']}" if exc.job.get("error") else ""
            print(f"error: job {args.job_id} {exc.job['state']}{reason}; it has no outputs", file=sys.stderr)
            return EXIT_JOB_FAILED
        except JobNotFinished as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except DownloadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_JOB_FAILED
    emit(args, [str(p) for p in paths], lambda ps: "\n".join(ps) or "no outputs")
    return EXIT_OK


def list_jobs(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        page = client.list(state=args.state, kind=args.kind, limit=args.limit)
    emit(args, page, lambda p: "\n".join(describe(j).splitlines()[0] for j in p["items"]) or "no jobs")
    return EXIT_OK


def list_models(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        models = client.models(name=args.name)

    def human(items: list[dict[str, Any]]) -> str:
        rows = [
            f"{m['id']}  {m['name']}:{m['version']}  "
            f"-ELBO {m['metrics'].get('heldout_neg_elbo', float('nan')):.2f}  "
            f"cond.acc {m['metrics'].get('conditional_accuracy', float('nan')):.1%}"
            for m in items
        ]
        return "\n".join(rows) or "no models"

    emit(args, models, human)
    return EXIT_OK


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
    settings = get_settings()
    settings.ensure_home()
    threads = str(settings.resolved_torch_threads())
    # OpenMP reads these once at start-up, before torch.set_num_threads can act.
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    os.environ.setdefault("MKL_NUM_THREADS", threads)
    argv = [
        "worker",
        "--pool",
        "solo",
        "--queues",
        settings.queue,
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

    return run(epochs=args.epochs, per_class=args.per_class, seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
