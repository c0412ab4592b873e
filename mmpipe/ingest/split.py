"""Stable, seeded validation split and shard assignment, both keyed by a hash of the guid."""

from __future__ import annotations

import hashlib


def unit_hash(*parts: object) -> float:
    """A uniform number in [0, 1) that depends only on ``parts``."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_validation(guid: str, label: str | None, fraction: float, seed: int, group: str | None = None) -> bool:
    """Whether a training sample goes to validation.

    Each sample (or its whole ``group``) is compared with a per-label hash threshold, so every class
    gives about ``fraction`` of its samples (stratified), and a guid never changes side when other
    samples are added or removed.
    """
    if group is not None:  # a group holds several labels: stratification is by group only
        return unit_hash("val", seed, "group", group) < fraction
    return unit_hash("val", seed, label, guid) < fraction


def shard_of(guid: str, n_shards: int) -> int:
    """The shard a guid belongs to: stable across runs, seeds and data set growth."""
    return int(hashlib.sha256(f"shard\x1f{guid}".encode()).hexdigest()[:12], 16) % n_shards


SAMPLES_PER_SHARD = 20_000  # ~3 min of text or ~25 min of images per job on 2 CPU cores


def shard_count(shards: int | str, n_samples: int) -> int:
    """Feature shards per encoder: ``shards`` itself, or for ``auto`` one per ``SAMPLES_PER_SHARD`` samples, so that
    a job's start-up (interpreter, imports, model load) stays a small share of its time and its memory does not
    grow with the data set. A changed count moves samples between shards; their vectors are still reused."""
    return int(shards) if shards != "auto" else max(1, -(-int(n_samples) // SAMPLES_PER_SHARD))
