"""A prepared dataset in memory (:class:`PrepareResult`) and its writing to a directory:
``vocab/<field>.txt``, ``{split}/part-*.tfrecord``, ``report.json`` and
``dataset_spec.json`` (the layout of ``docs/data_format.md``).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
from typing import Any

import numpy as np

from feseq_tf import schema
from pipelines.tfrecord import record_features, write_tfrecords


@dataclasses.dataclass
class PrepareResult:
    """What :func:`pipelines.generic.build_dataset` produced.

    Attributes:
        spec: DatasetSpec. The dataset spec written to ``dataset_spec.json``.
        report: dict. The report written to ``report.json``.
        tables: dict. ``split -> feature name -> numpy array``, exactly the features of
            the TFRecords in record order (scalars ``[n]``, histories ``[n, L]``).
        out_dir: str or None. Where the dataset was written (None if not written).
        vocabularies: dict. ``field -> raw values in id order`` (the first has id 2),
            the content of ``vocab/<field>.txt``.
    """

    spec: schema.DatasetSpec
    report: dict[str, Any]
    tables: dict[str, dict[str, np.ndarray]]
    out_dir: str | None = None
    vocabularies: dict[str, list[str]] = dataclasses.field(default_factory=dict)


def check_splits(result: PrepareResult) -> None:
    """Refuse a dataset with an empty split; warn, naming it, of a split with one class.

    No AUC can be computed on an empty split (nor model selection on an empty valid
    split); on a split of one label the AUC is undefined, which a run can survive
    (its metrics say NaN), so that is a warning on standard error.

    Args:
        result: PrepareResult. What :func:`pipelines.generic.build_dataset` computed.

    Raises:
        ValueError: a split has no samples (the message names it and every split's size).
    """
    label = result.spec.label
    sizes = {s: len(result.tables[s][label]) for s in schema.SPLITS}
    described = ", ".join(f"{s} {n}" for s, n in sizes.items())
    for s, n in sizes.items():
        if n == 0:
            raise ValueError(
                f"split {s!r} of dataset {result.spec.name!r} is empty ({described} samples): "
                "no AUC can be computed on it; give more rows, more users or other split "
                "fractions."
            )
    for s in schema.SPLITS:
        classes = np.unique(result.tables[s][label])
        if len(classes) < 2:
            print(
                f"warning: split {s!r} of dataset {result.spec.name!r} has only label "
                f"{classes[0]:g} ({sizes[s]} samples): its AUC is undefined.",
                file=sys.stderr,
                flush=True,
            )


def write_json(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON."""
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2)


def shard_paths(out_dir: str, split: str, num_shards: int) -> list[str]:
    """``{split}/part-00000-of-0000N.tfrecord``... of a dataset directory."""
    return [
        os.path.join(out_dir, split, f"part-{i:05d}-of-{num_shards:05d}.tfrecord")
        for i in range(num_shards)
    ]


def shard_counts(sizes: dict[str, int], num_shards: int | None = None) -> dict[str, int]:
    """TFRecord shards of each split: ``num_shards`` (None: about 100k samples a shard)
    for training, proportionally fewer for valid and test (at least 1)."""
    n_train = sizes["train"]
    train_shards = num_shards or max(1, -(-n_train // 100_000))
    return {
        s: train_shards if s == "train" else max(1, -(-train_shards * sizes[s] // max(n_train, 1)))
        for s in schema.SPLITS
    }


def write_dataset(
    result: PrepareResult,
    out_dir: str,
    *,
    num_shards: int | None = None,
    records: bool = True,
) -> None:
    """Write a prepared dataset: vocabularies, TFRecord shards, report and spec.

    Earlier shards, vocabularies, report and spec in ``out_dir`` are removed first, once
    the splits are checked (:func:`check_splits`).

    Args:
        result: PrepareResult. What :func:`pipelines.generic.build_dataset` computed.
        out_dir: str. Output directory (created).
        num_shards: int or None. Training shards; valid/test get proportionally fewer
            (at least 1). None: about 100k samples a shard.
        records: bool. Write the TFRecord shards (False writes only the vocabularies,
            ``report.json`` and ``dataset_spec.json``).

    Raises:
        ValueError: a split is empty (:func:`check_splits`); nothing is written then.
    """
    check_splits(result)
    spec, tables = result.spec, result.tables
    os.makedirs(out_dir, exist_ok=True)
    stale = [os.path.join(out_dir, schema.SPEC_FILE), os.path.join(out_dir, "report.json")]
    stale += glob.glob(os.path.join(out_dir, "vocab", "*.txt"))
    if records:
        for s in schema.SPLITS:
            stale += glob.glob(os.path.join(out_dir, s, "part-*.tfrecord"))
    for path in stale:
        if os.path.exists(path):
            os.remove(path)
    for name, values in result.vocabularies.items():
        schema.write_vocab(out_dir, name, values)
    if records:
        kinds = record_features(spec)
        counts = shard_counts({s: len(tables[s][spec.label]) for s in schema.SPLITS}, num_shards)
        for s in schema.SPLITS:
            rows, shards = len(tables[s][spec.label]), counts[s]
            os.makedirs(os.path.join(out_dir, s), exist_ok=True)
            bounds = np.linspace(0, rows, shards + 1).round().astype(int)
            for path, a, b in zip(
                shard_paths(out_dir, s, shards), bounds[:-1], bounds[1:], strict=True
            ):
                write_tfrecords(path, {k: v[a:b] for k, v in tables[s].items()}, kinds)
    else:
        write_json(os.path.join(out_dir, "report.json"), result.report)
        spec.save(out_dir)
    result.out_dir = out_dir
