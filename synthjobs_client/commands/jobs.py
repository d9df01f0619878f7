"""Job commands: submit (`train`, `sample`), follow (`status`, `wait`, `list`, `jobs events`), act on one
(`cancel`, `jobs delete`) and fetch its outputs (`download`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from synthjobs_client import output
from synthjobs_client.client import Client, Job
from synthjobs_client.errors import DownloadError, JobFailed, JobNotFinished
from synthjobs_client.output import EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE, JsonFlag, describe, show
from synthjobs_client.progress import progress_printer
from synthjobs_client.specs import DATASET_HELP, parse_counts, parse_dataset, parse_distribution

app = typer.Typer(
    help="List jobs, act on one or read its history (cancel, delete, events).",
    no_args_is_help=True,
    epilog="Examples:\n\n  synthjobs jobs list --state RUNNING\n\n  synthjobs jobs cancel JOB_ID\n\n"
    "  synthjobs jobs delete JOB_ID --json\n\n  synthjobs jobs events JOB_ID",
)

JobId = Annotated[str, typer.Argument(help="The job's id.", show_default=False)]
WaitFlag = Annotated[bool, typer.Option("--wait", help="Wait for the job to finish (exit 1 if it fails).")]
Timeout = Annotated[
    float | None, typer.Option("--timeout", min=0, help="Seconds to wait at most (exit 4 past them).")
]
Notify = Annotated[
    str | None,
    typer.Option(
        "--notify",
        metavar="URL",
        help="POST the job's end (signed) to this https URL; its secret is printed once.",
        show_default=False,
    ),
]


def submitted(job: Job, *, as_json: bool) -> Job:
    """Print a new job's `notify` secret (to stderr, once) unless the JSON output carries it."""
    secret = (job.get("notify") or {}).get("secret")
    if secret and not as_json:
        typer.echo(f"notify secret (shown once, verify deliveries with it): {secret}", err=True)
    return job


def follow(client: Client, job: Job, *, wait: bool, timeout: float | None, as_json: bool) -> int:
    """Print the job (after waiting for it with `--wait`); exit 1 if the wait ends FAILED or CANCELLED."""
    if wait:
        try:
            job = client.wait(job["id"], timeout=timeout, on_progress=None if as_json else progress_printer())
        except JobFailed as exc:
            show(exc.job, lambda j: f"job {j['id']} {j['state']}: {j.get('error')}", as_json=as_json)
            return EXIT_JOB_FAILED
    show(job, describe, as_json=as_json)
    return EXIT_OK


def register(root: typer.Typer) -> None:
    """Add the top-level job commands to `root`, and the `jobs` group (which also has list/status/wait)."""
    for command in (train, sample, status, wait_job, list_jobs, cancel_job, download):
        root.command(**COMMANDS[command.__name__])(command)
    for command in (list_jobs, status, wait_job):
        app.command(**COMMANDS[command.__name__])(command)
    root.add_typer(app, name="jobs")


def train(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help=DATASET_HELP)] = "digits",
    model_name: Annotated[str | None, typer.Option(help="Registry name (default: <dataset>-cvae).")] = None,
    conditioning: Annotated[
        Literal["concat", "additive"] | None,
        typer.Option(help="How the label meets z (default concat)."),
    ] = None,
    architecture: Annotated[
        Literal["auto", "mlp", "conv"] | None, typer.Option(help="Network (default auto: by image size).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    latent_dim: Annotated[int | None, typer.Option(min=1)] = None,
    hidden_dim: Annotated[int | None, typer.Option(min=1)] = None,
    learning_rate: Annotated[float | None, typer.Option()] = None,
    beta: Annotated[float | None, typer.Option(help="Weight of the KL term.")] = None,
    kl_warmup_epochs: Annotated[
        int | None, typer.Option(min=0, help="Epochs over which beta ramps up.")
    ] = None,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="bf16 autocast on CUDA.")] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    max_runtime_seconds: Annotated[int | None, typer.Option(min=1, help="Fail the job past this.")] = None,
    notify: Notify = None,
    wait: WaitFlag = False,
    timeout: Timeout = None,
    as_json: JsonFlag = False,
) -> int:
    """Submit a training job."""
    hyper = {
        "conditioning": conditioning,
        "architecture": architecture,
        "epochs": epochs,
        "batch_size": batch_size,
        "latent_dim": latent_dim,
        "hidden_dim": hidden_dim,
        "learning_rate": learning_rate,
        "beta": beta,
        "kl_warmup_epochs": kl_warmup_epochs,
        "amp": amp,
    }
    body: dict[str, Any] = {
        "dataset": parse_dataset(dataset),
        "hyperparameters": {k: v for k, v in hyper.items() if v is not None},
        "seed": seed,
    }
    if model_name:
        body["model_name"] = model_name
    if max_runtime_seconds is not None:
        body["max_runtime_seconds"] = max_runtime_seconds
    if notify:
        body["notify"] = {"url": notify}
    with output.client_for(ctx.obj) as client:
        job = submitted(client.submit_train(body), as_json=as_json)
        return follow(client, job, wait=wait, timeout=timeout, as_json=as_json)


def sample(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="A model id, name:version or name@alias.", show_default=False)],
    per_class: Annotated[
        str | None, typer.Option(help="Samples for every class (1000), or per class (3=500,8=200).")
    ] = None,
    total: Annotated[int | None, typer.Option(min=1, help="Samples in all, split by --distribution.")] = None,
    distribution: Annotated[
        str, typer.Option(help="With --total: uniform, CLASS=P,... or JSON (@dist.json).")
    ] = "uniform",
    output_format: Annotated[
        Literal["npz", "webdataset"], typer.Option("--format", help="Shard format.")
    ] = "npz",
    quality: Annotated[
        Literal["basic", "tstr"],
        typer.Option(help="tstr: also train on synthetic, test on real."),
    ] = "basic",
    quality_samples: Annotated[int | None, typer.Option(min=0, help="Samples scored for quality.")] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    temperature: Annotated[float, typer.Option(help="Scale of z ~ N(0, T² I).")] = 1.0,
    shard_size: Annotated[int | None, typer.Option(min=1, help="Samples per output shard.")] = None,
    shuffle: Annotated[
        bool, typer.Option("--shuffle/--no-shuffle", help="Shuffle within each shard.")
    ] = True,
    notify: Notify = None,
    wait: WaitFlag = False,
    timeout: Timeout = None,
    as_json: JsonFlag = False,
) -> int:
    """Submit a sampling job from a trained model: --per-class counts, or a --total and a --distribution."""
    if (per_class is None) == (total is None):
        raise typer.BadParameter("give one of --per-class or --total", param_hint="--per-class")
    body: dict[str, Any] = {"model": model, "seed": seed, "temperature": temperature}
    if per_class is not None:
        body["per_class"] = parse_counts(per_class)
    else:
        body.update(total=total, distribution=parse_distribution(distribution))
    if output_format != "npz":
        body["format"] = output_format
    if quality != "basic":
        body["quality"] = quality
    optional = {"quality_samples": quality_samples, "shard_size": shard_size}
    body.update({k: v for k, v in optional.items() if v is not None})
    if not shuffle:
        body["shuffle"] = False
    if notify:
        body["notify"] = {"url": notify}
    with output.client_for(ctx.obj) as client:
        job = submitted(client.submit_sample(body), as_json=as_json)
        return follow(client, job, wait=wait, timeout=timeout, as_json=as_json)


def status(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> int:
    """Show a job: state, phase, progress, result or error."""
    with output.client_for(ctx.obj) as client:
        show(client.get(job_id), describe, as_json=as_json)
    return EXIT_OK


def wait_job(ctx: typer.Context, job_id: JobId, timeout: Timeout = None, as_json: JsonFlag = False) -> int:
    """Wait for a job; exit 0 when it succeeds, 1 when it fails, 4 past --timeout."""
    with output.client_for(ctx.obj) as client:
        return follow(client, {"id": job_id}, wait=True, timeout=timeout, as_json=as_json)


def list_jobs(
    ctx: typer.Context,
    state: Annotated[
        Literal["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"] | None,
        typer.Option(),
    ] = None,
    kind: Annotated[str | None, typer.Option(help="train or sample.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the page before.")] = None,
    as_json: JsonFlag = False,
) -> int:
    """List jobs, newest first."""
    with output.client_for(ctx.obj) as client:
        page = client.list(state=state, kind=kind, limit=limit, cursor=cursor)
    show(
        page,
        lambda p: output.rows(p["items"], lambda j: describe(j).splitlines()[0], "no jobs"),
        as_json=as_json,
    )
    return EXIT_OK


def cancel_job(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> int:
    """Cancel a queued or running job (a finished one is a 409: exit 2)."""
    with output.client_for(ctx.obj) as client:
        show(client.cancel(job_id), describe, as_json=as_json)
    return EXIT_OK


@app.command("cancel", epilog="Example: synthjobs jobs cancel JOB_ID --json")
def jobs_cancel(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> int:
    """Cancel a queued or running job (a finished one is a 409: exit 2)."""
    return cancel_job(ctx, job_id, as_json)


@app.command("delete", epilog="Example: synthjobs jobs delete JOB_ID")
def delete_job(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> int:
    """Delete a job's outputs, cancelling it first if it runs (the job's record stays)."""
    with output.client_for(ctx.obj) as client:
        job = client.delete(job_id)
    show(job, lambda j: f"job {j['id']}: outputs deleted ({j.get('deletion', 'done')})", as_json=as_json)
    return EXIT_OK


@app.command("events", epilog="Example: synthjobs jobs events JOB_ID --json")
def job_events(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> int:
    """What happened to a job, oldest first: claims, epochs, uploads, failures."""
    with output.client_for(ctx.obj) as client:
        events = client.events(job_id)
    show(
        events,
        lambda es: output.rows(es, lambda e: f"{e['at']}  {e['kind']}  {e['message']}", "no events"),
        as_json=as_json,
    )
    return EXIT_OK


def download(
    ctx: typer.Context,
    job_id: JobId,
    dest: Annotated[
        Path, typer.Argument(help="Folder to write into (created if needed).", show_default=False)
    ],
    as_json: JsonFlag = False,
) -> int:
    """Download a job's outputs, shards checked against the manifest's sha256.

    Exit 1 for a failed or cancelled job (it has no outputs) or a shard unlike the manifest's, 2 for a job
    not finished yet.
    """
    with output.client_for(ctx.obj) as client:
        try:
            paths = client.download(job_id, dest)
        except JobFailed as exc:
            reason = f": {exc.job['error']}" if exc.job.get("error") else ""
            print(f"error: job {job_id} {exc.job['state']}{reason}; it has no outputs", file=sys.stderr)
            return EXIT_JOB_FAILED
        except JobNotFinished as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except DownloadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_JOB_FAILED
    show([str(p) for p in paths], lambda ps: "\n".join(ps) or "no outputs", as_json=as_json)
    return EXIT_OK


COMMANDS: dict[str, dict[str, Any]] = {
    "train": {
        "name": "train",
        "epilog": "Examples:\n\n  synthjobs train --epochs 30 --wait\n\n"
        "  synthjobs train --dataset mnist:/data/torchvision --epochs 10 --conditioning concat\n\n"
        "  synthjobs train --dataset @spec.json --model-name shapes-cvae --json",
    },
    "sample": {
        "name": "sample",
        "epilog": "Examples:\n\n  synthjobs sample digits-cvae:1 --per-class 1000 --wait\n\n"
        "  synthjobs sample digits-cvae@champion --total 1000000 --distribution 3=0.5,8=0.5 "
        "--format webdataset --quality tstr --json",
    },
    "status": {"name": "status", "epilog": "Example: synthjobs status JOB_ID --json"},
    "wait_job": {"name": "wait", "epilog": "Example: synthjobs wait JOB_ID --timeout 600"},
    "list_jobs": {
        "name": "list",
        "epilog": "Examples:\n\n  synthjobs list --state FAILED\n\n"
        "  synthjobs list --kind sample --limit 5 --json",
    },
    "cancel_job": {"name": "cancel", "epilog": "Example: synthjobs cancel JOB_ID"},
    "download": {"name": "download", "epilog": "Example: synthjobs download JOB_ID ./out"},
}
