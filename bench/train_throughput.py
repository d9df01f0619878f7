"""Training throughput of the service next to a bare PyTorch loop: `python bench/train_throughput.py`.

For each dataset it runs, in this one process run and on the same device:

- bare loop: `training.model.build_model` (seeded as `train` seeds it), Adam with the same lr, the same data
  tensors (fingerprints checked against the job's), batch size and epochs; only the epochs are timed, with
  no per-batch `.item()`, no held-out evaluation and no callbacks;
- `train()`: `training.train.train` called directly in this process (the library loop the worker runs:
  per-batch loss check, held-out -ELBO after every epoch), to split library cost from service cost;
- service: a real training job through the API, broker and a worker. Its throughput is the wall time from
  the first to the last "epoch" event divided by the epochs between them, so every per-epoch cost of the
  service (progress and event writes, checkpoints) is in it. The whole job (started_at -> finished_at) is
  printed for context, split by its events into data loading, epochs, evaluation and upload.
- service again, same request: the second job finds the evaluation classifier in its tenant's cache
  (`worker.pipelines.classifier_cache`); both jobs' "classifier" events (cached or trained, seconds) and
  whole-job times are printed side by side, with a check that their metrics are identical.

The bare loop runs before and after the service; the ratio is against their mean. Datasets: (a) the bundled
8x8 digits with the default MLP; (b) the digits upscaled to 28x28 (bilinear), uploaded as an .npz through
`POST /v1/datasets` and trained with the conv body. Prints only; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import common
import torch

from synthjobs.settings import Settings
from training.config import TrainConfig
from training.data import ImageDataset, dataset_from_arrays, fingerprint, load_digits_dataset
from training.model import build_model, elbo_loss
from training.train import _snapshot, heldout_neg_elbo, train

PRECISIONS = ("fp32", "bf16")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]; the service gets SYNTHJOBS_DEVICE")
    p.add_argument("--threads", type=int, default=1, help="torch threads in every process (default 1)")
    p.add_argument("--digits-epochs", type=int, default=200, help="epochs of (a), 8x8 digits, MLP")
    p.add_argument("--conv-epochs", type=int, default=15, help="epochs of (b), 28x28 digits, conv")
    p.add_argument("--size", type=int, default=28, help="image size of (b)")
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-conv", action="store_true", help="run (a) only")
    p.add_argument("--redis-url", help="broker (default: the embedded SQLite broker)")
    p.add_argument("--database-url", help="jobs database (default: SQLite in the temp dir)")
    p.add_argument("--quick", action="store_true", help="10x fewer epochs (at least 3): a smoke run")
    p.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated, of fp32 and bf16 (bf16 autocast: the job's `amp`, CUDA only; default fp32)",
    )
    args = p.parse_args()
    args.precisions = [x.strip() for x in args.precision.split(",") if x.strip()]
    if not args.precisions or set(args.precisions) - set(PRECISIONS):
        p.error(f"--precision takes a comma-separated list of {', '.join(PRECISIONS)}")
    return args


@dataclass
class Case:
    """One dataset to benchmark: how the service is asked for it, and the same data for the local loops."""

    name: str
    data: ImageDataset
    cfg: TrainConfig
    dataset_spec: Any  # the request's "dataset"


@dataclass
class ServiceRun:
    job: dict[str, Any]
    epochs: list[dict[str, Any]]  # the "epoch" events, oldest first
    phases: dict[str, float]  # seconds of each part of the job, from its events
    classifier: dict[str, Any] | None  # the "classifier" event's data (cached or not, seconds); None: none


def bare_loop(cfg: TrainConfig, data: ImageDataset, device: str) -> float:
    """Seconds of `cfg.epochs` epochs of plain minibatch Adam on the CVAE (set-up not timed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, data.input_dim, data.num_classes, image_shape=data.image_shape)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    rng = torch.Generator().manual_seed(cfg.seed)
    x_all, y_all = data.train_x.to(device), data.train_y.to(device)
    n = len(y_all)
    autocast_on = torch.device(device).type
    autocast = cfg.amp and autocast_on == "cuda"  # as `training.train._step` decides it

    def epochs() -> float:
        total = torch.zeros((), device=device)
        for _ in range(cfg.epochs):
            perm = torch.randperm(n, generator=rng).to(device)
            for start in range(0, n, cfg.batch_size):
                idx = perm[start : start + cfg.batch_size]
                x, y = x_all[idx], y_all[idx]
                with torch.autocast(autocast_on, dtype=torch.bfloat16, enabled=autocast):
                    logits, mu, log_var = model(x, y, generator=rng)
                loss, _, _ = elbo_loss(logits, x, mu, log_var, beta=cfg.beta)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach()
        return float(total)  # one sync at the end

    seconds, final = common.timed(epochs, device)
    if not math.isfinite(final):
        raise RuntimeError("the bare loop diverged")
    return seconds


def library_loop(cfg: TrainConfig, data: ImageDataset, device: str) -> tuple[float, float, float]:
    """Seconds of: the epochs of `training.train.train`, one held-out evaluation, one TrainState snapshot.

    `train` builds the snapshot (a deep CPU copy of model and Adam state) after every `checkpoint_every`
    epochs and hands it to `on_checkpoint`, which in the worker drops it unless 5 s have passed.
    """
    _, result = common.timed(lambda: train(cfg, data, device=device), device)
    heldout, _ = common.timed(lambda: heldout_neg_elbo(result.model, data, device), device)
    model = result.model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    x, y = data.train_x[: cfg.batch_size].to(device), data.train_y[: cfg.batch_size].to(device)
    logits, mu, log_var = model(x, y)
    elbo_loss(logits, x, mu, log_var)[0].backward()
    optimizer.step()  # Adam's state (two moments per weight) now exists, as in training
    snapshot, _ = common.timed(lambda: _snapshot(cfg.epochs, model, optimizer, torch.Generator(), []), device)
    return sum(m.seconds for m in result.history), heldout, snapshot


def run_service(stack: common.Stack, case: Case) -> ServiceRun:
    """Train through the API and a worker; the job, its epoch events and its phases."""
    hyper = {
        "epochs": case.cfg.epochs,
        "batch_size": case.cfg.batch_size,
        "learning_rate": case.cfg.learning_rate,
        "architecture": case.cfg.architecture,
        "amp": case.cfg.amp,
    }
    body = {"dataset": case.dataset_spec, "hyperparameters": hyper, "seed": case.cfg.seed}
    job = common.wait_job(stack, stack.client.submit_train(body)["id"])
    events = stack.client.events(job["id"])
    classifier = [e["data"] for e in events if e["kind"] == "classifier"]
    data_events = [e for e in events if e["kind"] == "data"]
    if data_events and data_events[0]["data"]["fingerprint"] != fingerprint(case.data):
        raise RuntimeError(f"{case.name}: the service trained on other data than the local loops")
    at = {e["kind"]: common.parse_time(e["at"]) for e in reversed(events)}  # first of each kind
    epochs = [e for e in events if e["kind"] == "epoch"]
    first, last = common.parse_time(epochs[0]["at"]), common.parse_time(epochs[-1]["at"])
    started, finished = common.parse_time(job["started_at"]), common.parse_time(job["finished_at"])
    phases = {
        "load data": (at["data"] - started).total_seconds(),
        "to 1st epoch end": (first - at["data"]).total_seconds(),
        "epochs 2..N": (last - first).total_seconds(),
        "eval + upload": (finished - last).total_seconds(),
    }
    return ServiceRun(job=job, epochs=epochs, phases=phases, classifier=classifier[0] if classifier else None)


def with_load(fn: Any, own: Any) -> tuple[Any, float]:
    """fn()'s result and the cores other processes kept busy meanwhile (see common.OtherLoad)."""
    load = common.OtherLoad(own)
    result = fn()
    return result, load.cores()


def measure(stack: common.Stack, case: Case, device: str) -> None:
    cfg, n = case.cfg, len(case.data.train_y)
    precision = "bf16 autocast" if cfg.amp else "fp32"
    print(f"\n## {case.name}: {n} training images, {cfg.epochs} epochs, batch {cfg.batch_size}, {precision}")
    bare_loop(replace(cfg, epochs=2), case.data, device)  # warm-up: lazy imports, allocator, kernels
    mine = common.own_cpu_seconds
    stack_pids = [stack.api.pid, *(w.pid for w in stack.workers)]

    def ours() -> float:
        return mine() + sum(common.cpu_seconds(pid) for pid in stack_pids)

    bare_before, load_before = with_load(lambda: bare_loop(cfg, case.data, device), mine)
    (library, heldout, snapshot), load_library = with_load(lambda: library_loop(cfg, case.data, device), mine)
    service, load_service = with_load(lambda: run_service(stack, case), ours)
    bare_after, load_after = with_load(lambda: bare_loop(cfg, case.data, device), mine)
    again, load_again = with_load(lambda: run_service(stack, case), ours)
    bare = (bare_before + bare_after) / 2 / cfg.epochs  # seconds per epoch

    spans = len(service.epochs) - 1
    service_epoch = service.phases["epochs 2..N"] / spans if spans else float("nan")
    own_epoch = sum(e["data"]["seconds"] for e in service.epochs[1:]) / spans if spans else float("nan")
    rows = [
        ["bare loop, before the service", bare_before / cfg.epochs, None, load_before],
        ["bare loop, after the service", bare_after / cfg.epochs, None, load_after],
        ["train() in this process", library / cfg.epochs, bare * cfg.epochs / library, load_library],
        ["service: train()'s own epoch seconds", own_epoch, bare / own_epoch, load_service],
        [f"service: epoch events, first->last ({spans})", service_epoch, bare / service_epoch, load_service],
    ]
    rows = [[name, 1e3 * s, n / s, ratio, load] for name, s, ratio, load in rows]
    headers = ["loop", "ms/epoch", "samples/s", "ratio to bare (mean)", "other load (cores)"]
    common.print_table(headers, rows)
    print(
        f"service / bare loop = {bare / service_epoch:.3f} (target >= 0.9). Per epoch the service takes "
        f"{1e3 * (service_epoch - bare):+.1f} ms over the bare loop's {1e3 * bare:.1f} ms: inside train() "
        f"{1e3 * (own_epoch - bare):+.1f} ms (of which the held-out -ELBO {1e3 * heldout:.1f} ms), between "
        f"train()'s epochs {1e3 * (service_epoch - own_epoch):+.1f} ms (progress + event writes, the "
        f"TrainState snapshot ({1e3 * snapshot:.1f} ms here, built only when a checkpoint is kept) and "
        f"checkpoints kept every {Settings.model_fields['checkpoint_min_interval'].default:g} s)"
    )
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in service.phases.items())
    print(f"whole job {common.job_seconds(service.job):.2f} s (started_at -> finished_at): {phases}")
    print_cache_rows(service, again, load_service, load_again)
    metrics = service.job["result"]["metrics"]
    print(f"final held-out -ELBO {metrics['heldout_neg_elbo']:.2f} nats/image on {metrics['device']}")


def print_cache_rows(first: ServiceRun, again: ServiceRun, load_first: float, load_again: float) -> None:
    """The same job twice: the second one's evaluation classifier should come from the cache."""
    rows = []
    for name, run, load in (("1st job", first, load_first), ("2nd job, same request", again, load_again)):
        found = run.classifier or {}
        how = "none" if not found else ("cached" if found["cached"] else "trained")
        rows.append(
            [name, how, found.get("seconds"), run.phases["eval + upload"], common.job_seconds(run.job), load]
        )
    headers = ["service job", "classifier", "classifier s", "eval + upload s", "whole job s", "other load"]
    common.print_table(headers, rows, title="evaluation classifier cache")
    same = first.job["result"]["metrics"] | {"seconds_per_epoch": 0} == again.job["result"]["metrics"] | {
        "seconds_per_epoch": 0
    }
    ratio = common.job_seconds(first.job) / common.job_seconds(again.job)
    print(f"whole job 1st / 2nd = {ratio:.2f}x; metrics identical (seconds_per_epoch aside): {same}")


ONE_OFF = """
import time
t = time.perf_counter(); import torch; imported = time.perf_counter() - t
weights = [torch.nn.Parameter(torch.zeros(1))]
t = time.perf_counter(); torch.optim.Adam(weights); adam = time.perf_counter() - t
from training.data import load_digits_dataset
t = time.perf_counter(); load_digits_dataset(); digits = time.perf_counter() - t
print(f"{imported:.2f} {adam:.2f} {digits:.2f}")
"""


def one_off_costs() -> str:
    """What the first job of a fresh worker pays once: the first Adam() (imports torch._dynamo), sklearn."""
    output = subprocess.run(
        [sys.executable, "-c", ONE_OFF], capture_output=True, text=True, check=True
    ).stdout
    imported, adam, digits = output.split()
    return (
        f"one-off costs in a fresh process (the first job of each worker pays them): import torch {imported} "
        f"s, first torch.optim.Adam() {adam} s (imports torch._dynamo), first digits load {digits} s"
    )


def build_cases(args: argparse.Namespace, stack: common.Stack) -> list[Case]:
    base = TrainConfig(batch_size=args.batch_size, seed=args.seed)
    cases = [
        Case(
            "(a) digits 8x8, MLP",
            load_digits_dataset(),
            replace(base, dataset="digits", epochs=args.digits_epochs, architecture="mlp"),
            {"kind": "builtin", "name": "digits"},
        )
    ]
    if not args.skip_conv:
        images, labels = common.digits_upscaled(args.size)
        dataset_id = common.upload_npz(stack, images, labels)
        cases.append(
            Case(
                f"(b) digits upscaled to {args.size}x{args.size} (uploaded .npz), conv",
                dataset_from_arrays(images, labels),
                replace(base, dataset=f"uploaded:{dataset_id}", epochs=args.conv_epochs, architecture="conv"),
                {"kind": "uploaded", "id": dataset_id},
            )
        )
    return cases


def main() -> None:
    args = parse_args()
    if args.quick:
        args.digits_epochs = max(3, args.digits_epochs // 10)
        args.conv_epochs = max(3, args.conv_epochs // 10)
    common.limit_threads(args.threads)
    defaults = Settings.model_fields
    print(f"device: {common.describe_device(args.device)}; torch {torch.__version__}")
    print(f"broker: {args.redis_url or 'embedded default (kombu SQLAlchemy transport on SQLite)'}")
    print(
        "service defaults in force: SYNTHJOBS_CHECKPOINT_MIN_INTERVAL="
        f"{defaults['checkpoint_min_interval'].default}s, checkpoint_every={TrainConfig().checkpoint_every} "
        f"epoch, SYNTHJOBS_PROGRESS_INTERVAL={defaults['progress_interval'].default}s (per-batch progress; "
        "per-epoch progress and events are always written)"
    )
    print(one_off_costs())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        options = {"device": args.device, "threads": args.threads}
        options.update({"broker_url": args.redis_url, "database_url": args.database_url})
        with common.running_stack(Path(tmp) / "home", **options) as stack:
            for case in build_cases(args, stack):
                for precision in args.precisions:
                    measure(stack, replace(case, cfg=replace(case.cfg, amp=precision == "bf16")), args.device)
    print(f"\nbench wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
