"""Schedule commands: `schedules create|list|show|pause|resume|runs|delete` (cron-driven retraining)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from synthjobs_client import output
from synthjobs_client.output import EXIT_OK, JsonFlag, show
from synthjobs_client.specs import DATASET_HELP, load_json, parse_counts, parse_dataset

app = typer.Typer(
    help="Retrain a model name on a cron schedule, promoting a better model to champion.",
    no_args_is_help=True,
    epilog="Examples:\n\n  synthjobs schedules create nightly-digits --cron '0 3 * * *' "
    "--timezone Europe/Berlin --model-name digits-cvae --epochs 30\n\n"
    "  synthjobs schedules pause SCHEDULE_ID\n\n"
    "  synthjobs schedules runs SCHEDULE_ID --json",
)

ScheduleId = Annotated[str, typer.Argument(help="The schedule's id.", show_default=False)]


def _line(s: dict[str, Any]) -> str:
    paused = "  paused" if s["paused"] else ""
    when = f"'{s['cron']}' {s['timezone']}"
    return f"{s['id']}  {s['name']}  {when}  {s['model_name']}  next {s['next_due_at']}{paused}"


@app.command(
    "create",
    epilog="Examples:\n\n  synthjobs schedules create nightly --cron '0 3 * * *' --model-name digits-cvae\n\n"
    "  synthjobs schedules create weekly --cron '0 4 * * 1' --model-name mnist-cvae "
    "--dataset mnist:/data/torchvision --sample-per-class 10000\n\n"
    "  synthjobs schedules create nightly --from @schedule.json",
)
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name: a-z, 0-9, '.', '_' and '-'.", show_default=False)],
    cron: Annotated[str | None, typer.Option(help="5 fields: minute hour day month weekday.")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone the cron is read in (default UTC).")
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="The model name it retrains.")] = None,
    dataset: Annotated[str | None, typer.Option(help=DATASET_HELP)] = None,
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    min_tstr_gain: Annotated[float | None, typer.Option(help="Promote past this TSTR gain (0.005).")] = None,
    max_accuracy_drop: Annotated[
        float | None, typer.Option(help="...and this accuracy drop at most.")
    ] = None,
    skip_unchanged_data: Annotated[bool, typer.Option(help="Skip a run when the data is unchanged.")] = False,
    sample_per_class: Annotated[
        str | None, typer.Option(help="Sample this many per class from each new champion.")
    ] = None,
    from_spec: Annotated[
        str | None,
        typer.Option("--from", help="A whole schedule body as JSON (@schedule.json); flags override."),
    ] = None,
    as_json: JsonFlag = False,
) -> int:
    """Create a schedule; its first run is at the first due time from now."""
    body: dict[str, Any] = load_json(from_spec, "--from") if from_spec else {}
    body["name"] = name
    body.update(
        {k: v for k, v in {"cron": cron, "timezone": timezone, "model_name": model_name}.items() if v}
    )
    train = body.setdefault("train", {})
    if dataset is not None:
        train["dataset"] = parse_dataset(dataset)
    if epochs is not None:
        train.setdefault("hyperparameters", {})["epochs"] = epochs
    policy = {"min_tstr_gain": min_tstr_gain, "max_accuracy_drop": max_accuracy_drop}
    policy = {k: v for k, v in policy.items() if v is not None}
    if skip_unchanged_data:
        policy["skip_unchanged_data"] = True
    if policy:
        body.setdefault("policy", {}).update(policy)
    if sample_per_class is not None:
        body.setdefault("sample", {})["per_class"] = parse_counts(sample_per_class)
    with output.client_for(ctx.obj) as client:
        show(client.create_schedule(body), _line, as_json=as_json)
    return EXIT_OK


@app.command("list", epilog="Example: synthjobs schedules list --json")
def list_schedules(ctx: typer.Context, as_json: JsonFlag = False) -> int:
    """List the schedules with their next due time."""
    with output.client_for(ctx.obj) as client:
        items = client.schedules()
    show(items, lambda ss: output.rows(ss, _line, "no schedules"), as_json=as_json)
    return EXIT_OK


@app.command("show", epilog="Example: synthjobs schedules show SCHEDULE_ID --json")
def show_schedule(ctx: typer.Context, schedule_id: ScheduleId, as_json: JsonFlag = False) -> int:
    """Show one schedule."""
    with output.client_for(ctx.obj) as client:
        show(client.schedule(schedule_id), _line, as_json=as_json)
    return EXIT_OK


@app.command("pause", epilog="Example: synthjobs schedules pause SCHEDULE_ID")
def pause(ctx: typer.Context, schedule_id: ScheduleId, as_json: JsonFlag = False) -> int:
    """Stop a schedule firing until it is resumed."""
    with output.client_for(ctx.obj) as client:
        show(client.pause_schedule(schedule_id), _line, as_json=as_json)
    return EXIT_OK


@app.command("resume", epilog="Example: synthjobs schedules resume SCHEDULE_ID")
def resume(ctx: typer.Context, schedule_id: ScheduleId, as_json: JsonFlag = False) -> int:
    """Let a paused schedule fire again, from its next due time."""
    with output.client_for(ctx.obj) as client:
        show(client.resume_schedule(schedule_id), _line, as_json=as_json)
    return EXIT_OK


@app.command("runs", epilog="Example: synthjobs schedules runs SCHEDULE_ID --json")
def runs(ctx: typer.Context, schedule_id: ScheduleId, as_json: JsonFlag = False) -> int:
    """The schedule's firings: due time, the training job, and what came of it."""
    with output.client_for(ctx.obj) as client:
        items = client.schedule_runs(schedule_id)

    def line(r: dict[str, Any]) -> str:
        return f"{r['due_at']}  {r['outcome']}  job {r['job_id'] or '-'}  by {r['fired_by']}"

    show(items, lambda rs: output.rows(rs, line, "no runs yet"), as_json=as_json)
    return EXIT_OK


@app.command("delete", epilog="Example: synthjobs schedules delete SCHEDULE_ID")
def delete(ctx: typer.Context, schedule_id: ScheduleId) -> int:
    """Delete a schedule (the jobs and models it made stay)."""
    with output.client_for(ctx.obj) as client:
        client.delete_schedule(schedule_id)
    print(f"schedule {schedule_id} deleted")
    return EXIT_OK
