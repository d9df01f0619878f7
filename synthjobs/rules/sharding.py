"""How a sampling job's per-class counts are split into shards: pure arithmetic, no I/O.

Each class is spread evenly over the shards, and the remainders are staggered from class to class, so
every shard holds a mix of all classes and shard sizes differ by at most one. A shard's contents depend
only on the request, never on which worker runs it or when.
"""

from __future__ import annotations

import math


def shard_count(total: int, shard_size: int) -> int:
    """How many shards of at most `shard_size` samples hold `total` samples."""
    if total < 1 or shard_size < 1:
        raise ValueError("total and shard_size must be positive")
    return -(-total // shard_size)  # exact for any size: true division overflows a float past 1e308


def plan_shards(counts: list[int], shard_size: int) -> list[list[int]]:
    """Per-shard, per-class sample counts: `plan[shard][class]`.

    Column sums equal `counts` exactly; every shard holds at most `shard_size` samples.
    """
    if any(c < 0 for c in counts):
        raise ValueError("class counts must not be negative")
    shards = shard_count(sum(counts), shard_size)
    plan = [[0] * len(counts) for _ in range(shards)]
    offset = 0
    for cls, count in enumerate(counts):
        base, remainder = divmod(count, shards)
        for shard in range(shards):
            plan[shard][cls] = base + (1 if (shard - offset) % shards < remainder else 0)
        offset = (offset + remainder) % shards
    return plan


def split_total(total: int, weights: list[float]) -> list[int]:
    """Counts proportional to `weights` that add up to `total` exactly (largest remainder method)."""
    if total < 0 or not weights or any(not math.isfinite(w) or w < 0 for w in weights) or max(weights) <= 0:
        raise ValueError("total must be non-negative and weights finite, non-negative, not all zero")
    top = max(weights)
    weights = [w / top for w in weights]  # so the sum cannot overflow
    scale = total / sum(weights)
    exact = [w * scale for w in weights]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts
