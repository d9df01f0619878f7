"""The `synthjobs` command: drive the API over HTTP; the service's own commands run `synthjobs.server_cli`.

Exit codes: 0 success; 1 the job failed or was cancelled; 2 usage error or rejected request;
3 the API cannot be reached; 4 timed out waiting.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from synthjobs_client import config
from synthjobs_client.client import Client
from synthjobs_client.errors import (
    APIUnreachable,
    ClientError,
    DownloadError,
    JobFailed,
    JobNotFinished,
    WaitTimeout,
)
from synthjobs_client.progress import progress_printer

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
    api.set_defaults(handler=_server("run_api"))

    worker = commands.add_parser("worker", help="run a Celery worker for training and sampling jobs")
    worker.add_argument("--name", default=None, help="worker node name (default: Celery's)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(handler=_server("run_worker"))

    migrate = commands.add_parser("migrate", help="bring the database to the latest schema")
    migrate.set_defaults(handler=_server("run_migrate"))

    beat = commands.add_parser("beat", help="send the schedule tick every SYNTHJOBS_TICK_INTERVAL seconds")
    beat.add_argument("--loglevel", default="INFO")
    beat.set_defaults(handler=_server("run_beat"))

    tick = commands.add_parser("tick", help="fire the schedules due now (or at --now) once, and exit")
    tick.add_argument("--now", default=None, help="ISO time with offset to act as the clock (for tests)")
    tick.add_argument("--json", action="store_true", help="print machine-readable JSON")
    tick.set_defaults(handler=_server("run_tick"))

    reconcile = commands.add_parser(
        "reconcile", help="requeue jobs whose worker or message was lost (one pass)"
    )
    reconcile.add_argument("--json", action="store_true", help="print machine-readable JSON")
    reconcile.set_defaults(handler=_server("run_reconcile"))

    admin = commands.add_parser("admin", help="administration with direct database access")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    create = admin_commands.add_parser("create-token", help="make an API token for a tenant (shown once)")
    create.add_argument("--tenant", required=True, help="tenant name: a-z, 0-9, _ and -")
    create.add_argument("--label", default="", help="what the token is for")
    create.add_argument("--json", action="store_true", help="print machine-readable JSON")
    create.set_defaults(handler=_server("run_create_token"))
    revoke = admin_commands.add_parser("revoke-token", help="revoke an API token")
    revoke.add_argument("token")
    revoke.set_defaults(handler=_server("run_revoke_token"))

    demo = commands.add_parser(
        "demo", help="run the whole pipeline on this machine and print where results are"
    )
    demo.add_argument("--epochs", type=int, default=30)
    demo.add_argument("--per-class", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_server("run_demo"))


def _server(name: str) -> Callable[[argparse.Namespace], int]:
    """A handler that runs `synthjobs.server_cli.<name>`, importing the server only when it is called.

    By name (importlib), so the job commands never load the server side and this package installs alone.
    """

    def handler(args: argparse.Namespace) -> int:
        try:
            server = importlib.import_module("synthjobs.server_cli")
        except ImportError as exc:  # a client-only install: `pip install synthjobs`
            print(
                f"error: `synthjobs {args.command}` runs the service, which is not installed here ({exc}); "
                "install it with: pip install 'synthjobs[server]'",
                file=sys.stderr,
            )
            return EXIT_USAGE
        result: int = getattr(server, name)(args)
        return result

    return handler


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
    return Client(args.api_url or config.api_url(), token=config.client_token())


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


if __name__ == "__main__":
    sys.exit(main())
