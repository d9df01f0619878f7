"""Budgets between the API and the worker: what only the worker can measure fails the job with its figure."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from synthjobs_client.errors import JobFailed

pytestmark = pytest.mark.integration


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _folder(root: Path, name: str, files: dict[str, bytes]) -> str:
    for relative, payload in files.items():
        path = root / name / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    return (root / name).as_uri()


def test_bombs_and_oversized_models_fail_readably_on_the_real_stack(
    start_stack, tmp_path: Path, png_bomb: bytes, zip_bomb: bytes
) -> None:
    root = tmp_path / "data"
    env = {
        "SYNTHJOBS_DATA_ROOTS": json.dumps([str(root)]),
        "SYNTHJOBS_MAX_DATASET_BYTES": str(64 << 20),
        "SYNTHJOBS_MAX_MODEL_PARAMETERS": "10000000",
    }
    stack = start_stack(extra_env=env)
    upload = stack.client._http.post("/v1/datasets", files={"file": ("bomb.npz", zip_bomb)})
    assert upload.status_code == 413 and "134 MB" in upload.text, upload.text

    # Two 16000x16000 PNGs of 30 kB each: the API cannot see inside a folder, the worker reads the headers.
    bombs = _folder(root, "bombs", {"a/0.png": png_bomb, "b/0.png": png_bomb})
    job = stack.client.submit_train({"dataset": {"kind": "image_folder", "url": bombs}})
    with pytest.raises(JobFailed) as failed:
        stack.client.wait(job["id"], timeout=120, poll=0.2)
    assert "a/0.png is 16000x16000 = 256000000 pixels" in failed.value.job["error"]

    # A folder's image shape is known only to the worker: 64x64 with hidden_dim 8192 is 67M parameters.
    rng = np.random.default_rng(0)
    images = {
        f"{c}/{i}.png": _png(rng.integers(0, 256, (64, 64), dtype=np.uint8)) for c in "ab" for i in "01"
    }
    body = {
        "dataset": {"kind": "image_folder", "url": _folder(root, "small", images)},
        "hyperparameters": {"hidden_dim": 8192, "architecture": "mlp", "epochs": 1},
    }
    with pytest.raises(JobFailed) as failed:
        stack.client.wait(stack.client.submit_train(body)["id"], timeout=120, poll=0.2)
    assert "model would have 6.8e7 parameters" in failed.value.job["error"]  # latent 16, the retuned default
    assert "limit is 1e7" in failed.value.job["error"]
