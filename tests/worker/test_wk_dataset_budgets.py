"""The worker's dataset loaders under byte and pixel budgets: bombs fail readably, without allocating."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synthjobs.errors import InvalidRequest
from synthjobs.rules.sampling import SHARD_OVERHEAD_BYTES, sample_bytes
from synthjobs.settings import Settings
from training.config import TrainConfig
from training.data import DatasetError, dataset_from_arrays
from worker.formats import write_shard
from worker.pipelines.datasets import _load_npz, load_training_data
from worker.pipelines.train import check_model_fits

MB = 1 << 20


def _peak_traced(call: Callable[[], Any]) -> tuple[int, BaseException | None]:
    """Peak bytes Python and numpy allocated during `call` (numpy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        call()
        error = None
    except Exception as exc:  # noqa: BLE001 - returned for the test to inspect
        error = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, error


def _peak_rss_growth(call: Callable[[], Any]) -> tuple[int, BaseException | None]:
    """Growth of the process's peak resident memory during `call` (Linux: VmHWM, reset through clear_refs)."""
    status, clear = Path("/proc/self/status"), Path("/proc/self/clear_refs")
    try:
        clear.write_text("5")
    except OSError:
        pytest.skip("resetting peak RSS needs Linux /proc/self/clear_refs")

    def kb(field: str) -> int:
        line = next(line for line in status.read_text().splitlines() if line.startswith(field))
        return int(line.split()[1]) * 1024

    before = kb("VmRSS:")
    try:
        call()
        error = None
    except Exception as exc:  # noqa: BLE001 - returned for the test to inspect
        error = exc
    return kb("VmHWM:") - before, error


def test_a_zip_bomb_fails_readably_without_being_inflated(zip_bomb: bytes) -> None:
    peak, error = _peak_traced(lambda: _load_npz(zip_bomb, "dataset d1", 16 * MB))
    assert isinstance(error, DatasetError), error
    message = str(error)
    assert message.startswith("dataset d1: the arrays would take 134") and "limit is 16777216" in message
    assert peak < 4 * MB, f"{peak} bytes allocated to refuse a 128 MiB bomb"


def test_a_header_larger_than_its_data_fails_without_allocating_the_header_size(build_npz: Any) -> None:
    lying = build_npz({"images": ("|u1", (3000, 1000, 1000), 64), "labels": ("<i8", (3000,), 24000)})
    peak, error = _peak_traced(lambda: _load_npz(lying, "dataset d2", 1 << 40))
    assert isinstance(error, DatasetError) and "images.npy declares" in str(error), error
    assert peak < 4 * MB


def test_an_npz_within_budget_loads_as_before() -> None:
    buffer = io.BytesIO()
    labels = np.repeat(np.arange(3), 4)
    np.savez_compressed(buffer, images=np.zeros((12, 6, 6), np.uint8), labels=labels)
    data = _load_npz(buffer.getvalue(), "dataset d3", MB)
    assert data.image_shape == (1, 6, 6) and data.num_classes == 3


def test_a_huge_label_fails_without_building_a_name_per_class() -> None:
    labels = np.array([0, 0, 1, 10**12])
    peak, error = _peak_traced(lambda: dataset_from_arrays(np.zeros((4, 4, 4), np.uint8), labels))
    assert isinstance(error, DatasetError), error
    assert "label 1000000000000 implies 1000000000001 classes but there are only 4 images" in str(error)
    assert peak < MB


def test_a_folder_of_large_pngs_fails_before_decoding(tmp_path: Path, png_bomb: bytes) -> None:
    for cls in ("a", "b"):
        (tmp_path / "folder" / cls).mkdir(parents=True)
        (tmp_path / "folder" / cls / "big.png").write_bytes(png_bomb)
    settings = Settings(home=tmp_path, data_roots=[tmp_path])
    spec = {"kind": "image_folder", "url": (tmp_path / "folder").as_uri()}
    growth, error = _peak_rss_growth(
        lambda: load_training_data(spec, settings, storage=None, tenant="default")
    )  # type: ignore[arg-type]
    assert isinstance(error, DatasetError), error
    assert "a/big.png is 16000x16000 = 256000000 pixels; this deployment's limit is 16777216" in str(error)
    assert growth < 64 * MB, f"peak RSS grew by {growth} bytes refusing two 256-Mpixel PNGs"


def test_the_worker_refuses_a_model_past_the_budget_with_its_figure() -> None:
    data = dataset_from_arrays(np.zeros((4, 64, 64), np.uint8), np.array([0, 0, 1, 1]))
    cfg = TrainConfig(hidden_dim=4096, architecture="mlp")
    with pytest.raises(InvalidRequest, match=r"model would have 3.4e7 parameters .* limit is 1e7"):
        check_model_fits(cfg, data, Settings(max_model_parameters=10_000_000))
    check_model_fits(cfg, data, Settings())


@pytest.mark.parametrize("fmt", ["npz", "webdataset"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (1, 28, 28)])
def test_the_submit_time_shard_estimate_bounds_the_real_file(fmt: str, shape: tuple[int, int, int]) -> None:
    c, h, w = shape
    n = 50
    rng = np.random.default_rng(0)  # random pixels: PNG cannot compress them, the worst case
    images = rng.integers(0, 256, (n, h, w) if c == 1 else (n, h, w, c), dtype=np.uint8)
    buffer = io.BytesIO()
    write_shard(buffer, fmt, images, rng.integers(0, 10, n), "job-00000")
    estimate = n * (sample_bytes(list(shape), fmt) or 0) + SHARD_OVERHEAD_BYTES
    assert len(buffer.getvalue()) <= estimate < 1.2 * len(buffer.getvalue()) + SHARD_OVERHEAD_BYTES
