"""Operator-wide settings, from the environment (the Helm chart sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

from synapse_scim.core.durations import parse_duration


class Strategy(StrEnum):
    # Graph delta per tenant, caches, incremental syncs: the operator.
    DELTA = "delta"
    # Every workspace re-reads every group for every binding each poll interval, no caches: a baseline
    # for the benchmarks in bench/, never a production setting.
    NAIVE = "naive"


@dataclass(frozen=True)
class Settings:
    # How often the directory is asked what changed (Graph delta): the propagation delay.
    directory_poll_interval: float = 30.0
    write_concurrency: int = 8
    read_concurrency: int = 8
    # The directory's safety net: how often a full sync also re-reads every group from Graph instead
    # of trusting the delta-kept cache (Synapse assignments are re-listed every spec.syncInterval).
    directory_resync_interval: float = 3600.0
    # How long a binding's deletion waits for its clean-up before kopf retries it.
    finalizer_wait: float = 60.0
    # How long a deleted workspace may wait for its bindings' revocations before it says
    # DeletionBlocked (it keeps retrying after: controller/deletion.py).
    deletion_timeout: float = 600.0
    strategy: Strategy = Strategy.DELTA

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            directory_poll_interval=parse_duration(env.get("SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL", "30s")),
            write_concurrency=int(env.get("SYNAPSE_SCIM_WRITE_CONCURRENCY", "8")),
            read_concurrency=int(env.get("SYNAPSE_SCIM_READ_CONCURRENCY", "8")),
            finalizer_wait=parse_duration(env.get("SYNAPSE_SCIM_FINALIZER_WAIT", "60s")),
            deletion_timeout=parse_duration(env.get("SYNAPSE_SCIM_DELETION_TIMEOUT", "10m")),
            directory_resync_interval=parse_duration(env.get("SYNAPSE_SCIM_DIRECTORY_RESYNC_INTERVAL", "1h")),
            strategy=_strategy(env.get("SYNAPSE_SCIM_STRATEGY", "delta")),
        )


def _strategy(value: str) -> Strategy:
    try:
        return Strategy(value)
    except ValueError:
        raise ValueError(f"SYNAPSE_SCIM_STRATEGY must be 'delta' or 'naive', got {value!r}") from None
