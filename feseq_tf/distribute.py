"""Which ``tf.distribute`` strategy a run trains under, and who writes what.

``auto`` picks ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names a cluster of more
than one task, ``MirroredStrategy`` when more than one GPU is visible, else the default
(one-device) strategy. Under several workers every worker holds all tables (synchronous
all-reduce); the chief (worker 0, or the task of type ``chief``) writes the run's files,
the other workers write to temporary directories that are removed at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """This process's place in a ``TF_CONFIG`` cluster.

    Attributes:
        task_type: str. ``"worker"`` or ``"chief"``.
        task_index: int. Index among the tasks of that type.
        num_workers: int. Tasks that train (chief and workers).
        has_chief: bool. The cluster has a ``chief`` task (else worker 0 is the chief).
    """

    task_type: str
    task_index: int
    num_workers: int
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        """The chief task, or worker 0 when the cluster has no chief."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0
                                             and not self.has_chief)


def cluster_from_env(environ: dict[str, str] | None = None) -> Cluster | None:
    """The cluster ``TF_CONFIG`` describes, or None when it names no cluster of several tasks.

    Raises:
        ValueError: ``TF_CONFIG`` is not JSON, or its task is missing from its cluster.
    """
    text = (environ if environ is not None else os.environ).get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}): {text[:200]!r}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {text[:200]!r}.")
    cluster = config.get("cluster") or {}
    if not isinstance(cluster, dict):
        raise ValueError(f"TF_CONFIG's cluster must be an object of task lists, got {cluster!r}.")
    trainers = {k: v for k, v in cluster.items() if k in ("chief", "worker")}
    unknown = sorted(set(cluster) - {"chief", "worker", "evaluator"})
    if unknown:
        raise ValueError(
            f"TF_CONFIG names task types {unknown}: only chief and worker tasks train here "
            "(MultiWorkerMirroredStrategy; parameter servers are not supported by Keras 3)."
        )
    num = sum(len(v) for v in trainers.values())
    if num <= 1:
        return None
    task = config.get("task") or {}
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in trainers or not isinstance(index, int) or not 0 <= index < len(trainers[task_type]):
        raise ValueError(
            f"TF_CONFIG's task {task!r} is not one of its cluster's tasks {trainers!r}."
        )
    return Cluster(task_type, index, num, has_chief="chief" in trainers)


def resolve_strategy_name(name: str, environ: dict[str, str] | None = None) -> str:
    """The concrete strategy ``auto`` stands for here (other names pass through, checked)."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}.")
    if name != "auto":
        return name
    if cluster_from_env(environ) is not None:
        return "multi_worker"
    import tensorflow as tf

    return "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"


def make_strategy(name: str) -> Any:
    """A ``tf.distribute.Strategy`` for a strategy name (``auto`` resolved first).

    Any strategy but the default also applies the Keras workarounds of
    :mod:`feseq_tf.keras_compat`. A multi-worker strategy must be created before any other
    TensorFlow op runs in the process.

    Raises:
        ValueError: an unknown name, a bad ``TF_CONFIG``, or ``multi_worker`` without one.
    """
    import tensorflow as tf

    from feseq_tf import keras_compat

    concrete = resolve_strategy_name(name)
    if concrete == "default":
        return tf.distribute.get_strategy()
    keras_compat.apply()
    if concrete == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] if gpus else [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if cluster_from_env() is None:
        raise ValueError(
            "strategy multi_worker needs TF_CONFIG naming a cluster of at least two tasks "
            "(see README 'Training on several machines')."
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief() -> bool:
    """Whether this process writes the run's files (always, outside a cluster)."""
    cluster = cluster_from_env()
    return cluster is None or cluster.is_chief


def loopback_workers(n: int) -> list[str]:
    """``n`` worker addresses on 127.0.0.1 at ports free right now (local clusters, tests)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()
