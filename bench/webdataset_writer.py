"""webdataset shard writer: tarfile members vs the ustar header template, side by side in one run."""

import io
import sys
import time

import numpy as np

sys.path.insert(0, "tests/worker")
from test_wk_formats import _tarfile_reference

from worker.formats import write_webdataset

rng = np.random.default_rng(0)
im = rng.integers(0, 256, (20000, 8, 8), dtype=np.uint8)
lb = rng.integers(0, 10, 20000)


def new() -> bytes:
    b = io.BytesIO()
    write_webdataset(b, im, lb, "job-00003")
    return b.getvalue()


for _ in range(2):
    t = time.perf_counter()
    a = _tarfile_reference(im, lb, "job-00003")
    old_s = time.perf_counter() - t
    t = time.perf_counter()
    b = new()
    new_s = time.perf_counter() - t
    print(
        f"20,000 digits webdataset: tarfile {old_s * 1e6 / 20000:.1f} us/sample, "
        f"template {new_s * 1e6 / 20000:.1f} us/sample, speed-up {old_s / new_s:.2f}x, same bytes {a == b}"
    )
