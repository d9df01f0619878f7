"""Sampling jobs, shard by shard: each shard is its own task; the last one done triggers the finalizer.

Shard `i` draws from a random stream seeded by (job seed, i) alone and is stored under
`jobs/{job_id}/shard-{i:05d}.{npz|tar}`, written deterministically: a shard retried after a crash overwrites
the same key with the same bytes. A worker generates a shard in chunks and encodes each into the shard's file,
written in place in the store (`Storage.stage`: renamed into place in a local folder, a spool sent at the
end for S3), on a background thread while the next is generated (`shard_io`), so memory is bounded
by two chunks (plus the S3 spool), not by the job size.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synthjobs.errors import JobFailure, ObjectNotFound
from synthjobs.ledger import jobs, shards
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.registry import get_model
from synthjobs.ledger.tables import JobShard
from synthjobs.settings import Settings
from synthjobs.storage.base import Storage
from training.checkpoint import LoadedCheckpoint, load_checkpoint
from training.data import ImageDataset
from training.evaluate import (
    REPORT_SAMPLES,
    ClassCounts,
    preview_grid,
    reports,
    sample_per_class,
    score_model,
)
from training.privacy import gate_figures
from training.sample import (
    GENERATION_RECIPE,
    GenerationStopped,
    decoder_batch,
    generate,
    generate_chunks,
    shard_generator,
    shard_permutation,
)
from worker.context import LeaseLost
from worker.formats import EXTENSIONS
from worker.pipelines.datasets import load_training_data
from worker.pipelines.shard_io import ShardIO

log = logging.getLogger(__name__)
_models: OrderedDict[tuple[str, str], LoadedCheckpoint] = OrderedDict()


def load_model(settings: Settings, storage: Storage, model_id: str, device: torch.device) -> LoadedCheckpoint:
    """The model's checkpoint, loaded once per worker process (the two most recent are kept)."""
    key = (model_id, str(device))
    if key not in _models:
        with session_scope(settings.resolved_database_url()) as session:
            checkpoint_uri = get_model(session, model_id).checkpoint_uri
        _models[key] = load_checkpoint(storage.get_bytes(storage.key_of(checkpoint_uri)), device=device)
        while len(_models) > 2:
            _models.popitem(last=False)
    _models.move_to_end(key)
    return _models[key]


def shard_labels(params: dict[str, Any], index: int, counts: list[int]) -> torch.Tensor:
    """The labels of shard `index`: in class order, or with `shuffle` in an order fixed by (seed, index).

    The labels are permuted before generation, so no second copy of the images is made and a rerun gives
    the same bytes.
    """
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    if params.get("shuffle", False):  # jobs submitted before `shuffle` existed keep their class order
        labels = labels[shard_permutation(int(params["seed"]), index, len(labels))]
    return labels


def generate_shard(
    loaded: LoadedCheckpoint,
    params: dict[str, Any],
    index: int,
    counts: list[int],
    device: torch.device,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of shard `index` at once, latents from (seed, index) (`run_shard` streams them).

    Raises LeaseLost when `should_stop` turns True between batches.
    """
    labels = shard_labels(params, index, counts)
    try:
        images = generate(
            loaded.model,
            labels,
            generator=shard_generator(int(params["seed"]), index),
            temperature=float(params.get("temperature", 1.0)),
            device=device,
            should_stop=should_stop,
        )
    except GenerationStopped as exc:
        raise LeaseLost(f"shard {index}: {exc}") from exc
    return images, labels.numpy().astype(np.int64)


def score_subset(
    loaded: LoadedCheckpoint, images: np.ndarray, labels: np.ndarray, wanted: int, num_classes: int
) -> dict[str, Any]:
    """Per-class (scored, correct) counts of an evenly spaced subset, scored by the evaluation classifier.

    Counts, not accuracies, so the finalizer adds the shards' up (`ClassCounts`) into the job's figure.
    """
    picks = subset_picks(loaded, len(labels), wanted)
    return score_picked(loaded, images[picks], labels[picks], num_classes)


def subset_picks(loaded: LoadedCheckpoint, n: int, wanted: int) -> np.ndarray:
    """Indices of the evenly spaced subset of a shard's `n` images that its quality figure scores."""
    if loaded.classifier is None or wanted <= 0 or n == 0:
        return np.empty(0, dtype=np.int64)
    return np.linspace(0, n - 1, num=min(wanted, n)).round().astype(np.int64)


def score_picked(
    loaded: LoadedCheckpoint, images: np.ndarray, labels: np.ndarray, num_classes: int
) -> dict[str, Any]:
    """`score_subset`'s counts for the picked images and labels."""
    counts = ClassCounts.none(num_classes)
    if loaded.classifier is not None and len(labels):
        counts = ClassCounts.of(loaded.classifier, images, labels, num_classes)
    return {"scored": list(counts.scored), "correct": list(counts.correct)}


def run_shard(
    shard: JobShard,
    params: dict[str, Any],
    settings: Settings,
    storage: Storage,
    device: torch.device,
    lost: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Generate, encode and store one shard; return what `shards.complete_shard` records.

    `produce_shard` then its `finish`, on the caller's thread (the worker's task may run `finish` on its
    hand-off thread instead: `worker.handoff`).
    """
    return produce_shard(shard, params, settings, storage, device, lost).finish()


@dataclass
class ProducedShard:
    """A shard generated and encoded, its upload under way on its I/O thread (or done, overlap off)."""

    key: str
    shard_file: ShardIO
    stored: Future[tuple[int, str]]
    quality: dict[str, Any]
    started: float

    def finish(self) -> dict[str, Any]:
        """Wait for the storage to confirm the upload; what `shards.complete_shard` records.

        Raises the upload's error as itself; the shard's file is dropped unless it was committed.
        """
        try:
            size, sha256 = self.stored.result()
        finally:
            self.shard_file.close()
        return {
            "key": self.key,
            "sha256": sha256,
            "size": size,
            "seconds": time.monotonic() - self.started,
            "quality": self.quality,
        }


def produce_shard(
    shard: JobShard,
    params: dict[str, Any],
    settings: Settings,
    storage: Storage,
    device: torch.device,
    lost: Callable[[], bool] = lambda: False,
) -> ProducedShard:
    """Generate and encode one shard, start its upload and score its quality subset.

    The shard is generated chunk by chunk; with `settings.sample_overlap` each chunk is encoded on the
    shard's I/O thread while the next is generated, and the file is finished and committed there while the
    quality subset is scored (`shard_io`). The bytes are the same either way. The upload is confirmed only
    by `ProducedShard.finish`; an error on the I/O thread is raised there (or here) as itself.

    `lost` is polled between decoder batches and before the upload: once it is True (another worker or the
    reconciler took the shard over), LeaseLost is raised and nothing is written; the new owner writes the
    shard.
    """
    started = time.monotonic()
    loaded = load_model(settings, storage, params["model_id"], device)
    counts = list(shard.per_class["counts"])
    labels = shard_labels(params, shard.index, counts)
    label_array = labels.numpy().astype(np.int64)
    total = sum(params["counts"])
    wanted = math.ceil(int(params.get("quality_samples", 2000)) * shard.count / total) if total else 0
    picks = subset_picks(loaded, len(label_array), wanted)
    picked: list[np.ndarray] = []
    fmt = params.get("format", "npz")
    key = shards.shard_key(shard.job_id, shard.index, EXTENSIONS[fmt])
    image_shape = tuple(loaded.image_shape)
    one_image = image_shape[1:] if image_shape[0] == 1 else (*image_shape[1:], image_shape[0])
    prefix = f"{shard.job_id[:8]}-{shard.index:05d}"
    overlap = settings.sample_overlap
    shard_file = ShardIO(storage.stage(key), fmt, label_array, one_image, prefix, overlap=overlap)
    try:
        start = 0
        try:
            for images in generate_chunks(
                loaded.model,
                labels,
                generator=shard_generator(int(params["seed"]), shard.index),
                temperature=float(params.get("temperature", 1.0)),
                device=device,
                should_stop=lost,
            ):
                inside = picks[(picks >= start) & (picks < start + len(images))]
                picked.append(images[inside - start])  # a copy: the chunk itself goes to the I/O thread
                shard_file.add(images)
                start += len(images)
        except GenerationStopped as exc:
            raise LeaseLost(f"shard {shard.index}: {exc}") from exc
        if lost():
            raise LeaseLost(f"shard {shard.index} of job {shard.job_id} was taken over")
        stored = shard_file.upload()
        quality = score_picked(
            loaded,
            np.concatenate(picked) if picked else np.empty((0, *one_image), np.uint8),
            label_array[picks],
            len(counts),
        )
    except BaseException:
        shard_file.close()
        raise
    return ProducedShard(key, shard_file, stored, quality, started)


def finalize(job_id: str, settings: Settings, storage: Storage, device: torch.device) -> dict[str, Any]:
    """Check every shard in storage, write the manifest and preview grid; return the job's result.

    Raises ObjectNotFound / JobFailure naming the shard when one is missing or differs from its record.
    """
    with session_scope(settings.resolved_database_url()) as session:
        job = jobs.get_job(session, job_id)
        params = dict(job.params)
        rows = [_shard_record(s) for s in shards.list_shards(session, job_id)]
    check_shards_stored(storage, job_id, rows)
    # Every shard is DONE, so a partial file older than a lease is a killed attempt's: nobody commits it.
    swept = storage.sweep_partials(f"jobs/{job_id}/", older_than=settings.lease_seconds)
    if swept:
        log.info("job %s: removed %d partial shard files left by stopped workers", job_id, swept)
    loaded = load_model(settings, storage, params["model_id"], device)
    names = list(loaded.class_names)
    produced = [sum(r["per_class"][c] for r in rows) for c in range(len(names))]
    quality = _quality(rows, names)
    data, no_data = _real_data(settings, storage, params)
    if params.get("quality") == "tstr":
        quality.update(_tstr(settings, storage, loaded, params, device, (data, no_data)))
    privacy, fidelity = _reports(data, no_data, loaded, params, device)
    _check_privacy_gate(params, privacy, rows, storage)
    grid_uri = storage.put_bytes(f"jobs/{job_id}/grid.png", _preview(loaded, params, device), "image/png")
    manifest = {
        "job_id": job_id,
        "format": params.get("format", "npz"),
        "model_id": params["model_id"],
        "model": params.get("model"),
        "seed": params["seed"],
        "temperature": params.get("temperature", 1.0),
        "class_names": names,
        "image_shape": list(loaded.image_shape),
        "requested_per_class": params["counts"],
        "produced_per_class": produced,
        "total": sum(produced),
        "bytes": sum(r["bytes"] for r in rows),
        "quality": quality,
        "privacy": privacy,
        "fidelity": fidelity,
        "shuffle": bool(params.get("shuffle", False)),
        # How the bytes were made: the same recipe, model, seed and counts give the same shards.
        "generation_recipe": GENERATION_RECIPE,
        "decoder_batch": decoder_batch(loaded.image_shape),
        "shards": [{k: v for k, v in r.items() if k != "index"} for r in rows],
    }
    manifest_uri = storage.put_bytes(
        f"jobs/{job_id}/manifest.json", json.dumps(manifest, indent=2).encode(), "application/json"
    )
    return {
        "model_id": params["model_id"],
        "manifest_uri": manifest_uri,
        "grid_uri": grid_uri,
        "output_uris": [storage.uri(r["key"]) for r in rows],
        "total": sum(produced),
        "per_class": dict(zip(names, produced, strict=True)),
        "quality": quality,
        "privacy": privacy,
        "fidelity": fidelity,
        "format": manifest["format"],
    }


def check_shards_stored(storage: Storage, job_id: str, rows: list[dict[str, Any]]) -> None:
    """Every shard is stored with its recorded size: one listing, no download.

    The sha256 in each record was computed while the shard was written, from the very bytes uploaded (S3
    verifies its own SHA256 checksum of the body on upload), so reading every shard back to hash it again
    only doubled the job's I/O. A missing or truncated/overwritten shard still fails the job by name.
    """
    stored = dict(storage.list_objects(f"jobs/{job_id}/"))
    for row in rows:
        size = stored.get(row["key"])
        if size is None:
            raise ObjectNotFound(f"shard {row['index']}: no object {storage.uri(row['key'])}")
        if size != row["bytes"]:
            raise JobFailure(f"shard {row['index']} in storage ({size} bytes) differs from its record")


def _shard_record(shard: JobShard) -> dict[str, Any]:
    return {
        "index": shard.index,
        "key": shard.key,
        "count": shard.count,
        "per_class": shard.per_class["counts"],
        "sha256": shard.sha256,
        "bytes": shard.bytes,
        "quality": shard.quality,
    }


def _quality(rows: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    counts = ClassCounts.none(len(names))
    for row in rows:
        counts += ClassCounts(tuple(row["quality"]["scored"]), tuple(row["quality"]["correct"]))
    if counts.overall is None:
        return {"conditional_accuracy": None, "scored": 0}
    return {
        "conditional_accuracy": round(counts.overall, 4),
        "per_class": {names[c]: round(v, 4) for c, v in counts.per_class().items()},
        "scored": sum(counts.scored),
    }


def _real_data(
    settings: Settings, storage: Storage, params: dict[str, Any]
) -> tuple[ImageDataset | None, str | None]:
    """The model's own training data (as its tenant's), or None and why there is none.

    A model that records no training dataset (registered by hand, or before datasets were recorded) has no
    real data to compare with: TSTR and the privacy report are skipped with the reason, never computed on
    some other dataset.
    """
    with session_scope(settings.resolved_database_url()) as session:
        model = get_model(session, params["model_id"])
        spec = model.dataset.get("spec")
        tenant = model.tenant  # its training data is read as its own tenant's, from that tenant's sources
    if not spec:
        return None, "the model records no dataset it was trained on, so there is no real held-out data"
    return load_training_data(spec, settings, storage, tenant=tenant), None


def _tstr(
    settings: Settings,
    storage: Storage,
    loaded: LoadedCheckpoint,
    params: dict[str, Any],
    device: torch.device,
    real: tuple[ImageDataset | None, str | None] | None = None,
) -> dict[str, Any]:
    """TSTR on the model's real held-out split: a fixed classifier trained on fresh samples of every class.

    `real` is `_real_data`'s answer when the caller has it (loaded here otherwise)."""
    data, no_data = real if real is not None else _real_data(settings, storage, params)
    if data is None:
        return {"tstr": None, "trtr": None, "tstr_skipped": no_data}
    per_class = settings.tstr_samples_per_class
    # Streams from the job's seed; the conditional accuracy of these samples is not reported (the job's
    # own is over its shards, `_quality`).
    scores = score_model(
        loaded.model,
        data,
        seed=int(params["seed"]),
        samples_per_class=per_class,
        temperature=float(params.get("temperature", 1.0)),
        classifier=loaded.classifier,
        with_trtr=True,
        with_reports=False,
        device=device,
    )
    return {
        "tstr": round(scores.tstr, 4),
        "trtr": round(scores.trtr or 0.0, 4),
        "tstr_samples_per_class": per_class,
    }


def _reports(
    data: ImageDataset | None,
    no_data: str | None,
    loaded: LoadedCheckpoint,
    params: dict[str, Any],
    device: torch.device,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The job's privacy and fidelity reports, on `REPORT_SAMPLES` fresh samples of its requested classes.

    The samples come from the job's model, seed (stream SAMPLES) and temperature, so the subset is fixed
    in size and seeded whatever the job's size; they are drawn like the delivered ones, not read back.
    """
    if data is None or loaded.classifier is None:
        return {"skipped": no_data or "the model's checkpoint holds no evaluation classifier"}, None
    classes = [c for c, n in enumerate(params["counts"]) if n > 0]
    images, labels = sample_per_class(
        loaded.model,
        max(1, math.ceil(REPORT_SAMPLES / max(1, len(classes)))),
        seed=int(params["seed"]),
        classes=classes,
        temperature=float(params.get("temperature", 1.0)),
        device=device,
        image_shape=data.image_shape,
    )
    found = reports(loaded.classifier, images, labels, data, seed=int(params["seed"]))
    return found["privacy"], found["fidelity"]


def _check_privacy_gate(
    params: dict[str, Any], privacy: dict[str, Any], rows: list[dict[str, Any]], storage: Storage
) -> None:
    """Fail the job with the figure, and remove its shards, when its privacy report breaks a ceiling."""
    ceilings = params.get("privacy") or {}
    if not ceilings:
        return
    if "skipped" in privacy:
        raise JobFailure(f"privacy gate set but no privacy report could be made: {privacy['skipped']}")
    figures = gate_figures(privacy)
    for key, label in (("max_dcr_share", "dcr_share"), ("max_near_copies", "near_copies")):
        ceiling = ceilings.get(key)
        if ceiling is not None and figures[label] > ceiling:
            for row in rows:
                storage.delete(row["key"])
            raise JobFailure(
                f"privacy gate: {label.replace('_', ' ')} {figures[label]:.4f} exceeds {key} {ceiling:.4f} "
                f"(pixel {privacy['pixels'][label]:.4f}, features {privacy['features'][label]:.4f}); "
                "the samples were not delivered"
            )


def _preview(loaded: LoadedCheckpoint, params: dict[str, Any], device: torch.device) -> bytes:
    return preview_grid(
        loaded.model,
        seed=int(params["seed"]),
        classes=[c for c, n in enumerate(params["counts"]) if n > 0],
        temperature=float(params.get("temperature", 1.0)),
        device=device,
        class_names=loaded.class_names,
    )
