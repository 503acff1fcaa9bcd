"""Splitting a list of images between the jobs of one per-image stage (maps, pseudo masks, predictions)."""

from __future__ import annotations


def shard(names: list[str], i: int, n: int) -> list[str]:
    """Shard ``i`` of ``n`` (0-based), interleaved so that shards get similar mixes of images."""
    if not 0 <= i < n:
        raise ValueError(f"shard index {i} outside 0..{n - 1}")
    return names[i::n]
