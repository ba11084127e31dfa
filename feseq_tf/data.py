"""tf.data input: prepared TFRecord shards -> batches of (features dict, label).

The parse spec is derived once from the dataset spec. The pipeline follows the usual
high-throughput order: list files -> interleave TFRecordDataset -> shuffle examples
(training only) -> batch -> ``tf.io.parse_example`` on whole batches -> prefetch.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import tensorflow as tf

from feseq_tf.schema import GROUP_KEY, ORACLE_KEY, SPLITS, DatasetSpec


def split_files(dataset_dir: str, split: str) -> list[str]:
    """Sorted TFRecord shard paths of one split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    files = sorted(glob.glob(os.path.join(dataset_dir, split, "*.tfrecord")))
    if not files:
        raise FileNotFoundError(
            f"No TFRecord shards for split {split!r} under {dataset_dir!r}: "
            "prepare the dataset first."
        )
    return files


def _model_dtypes(spec: DatasetSpec) -> dict[str, tf.DType]:
    """Dtypes the model takes: int32 ids, float32 numbers, int64 timestamps."""
    out: dict[str, tf.DType] = {}
    for f in spec.fields:
        dtype = tf.int32 if f.is_categorical else tf.float32
        out[f.name] = dtype
        if f.sequential:
            out[f.hist_name] = dtype
    out[spec.time_field] = tf.int64
    out[spec.time_hist_name] = tf.int64
    out["hist_len"] = tf.int32
    return out


def make_dataset(
    dataset_dir: str,
    split: str,
    batch_size: int,
    *,
    training: bool = False,
    spec: DatasetSpec | None = None,
    seed: int | None = None,
    shuffle_buffer: int = 100_000,
    drop_remainder: bool = False,
    repeat: bool = False,
    cache: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(features, label)`` from a prepared dataset.

    Args:
        dataset_dir: str. A prepared dataset directory (see docs/data_format.md).
        split: str. ``"train"``, ``"valid"`` or ``"test"``.
        batch_size: int. Examples per batch.
        training: bool. Shuffle shards and examples (seeded by ``seed``). Defaults to False,
            in which case examples come in file order, so predictions line up with
            :func:`read_columns`.
        spec: DatasetSpec. Defaults to the directory's ``dataset_spec.json``.
        seed: int. Shuffle seed.
        shuffle_buffer: int. Example shuffle buffer size.
        drop_remainder: bool. Drop the last partial batch (fixed shapes).
        repeat: bool. Repeat forever (for benchmarks).
        cache: bool. Cache parsed batches in memory after the first pass
            (evaluation sets that are read every epoch).

    Returns:
        A ``tf.data.Dataset`` of ``(dict of tensors, float32 label [B])``; categorical
        features are int32, numeric float32, timestamps int64, histories ``[B, L]``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    spec = spec or DatasetSpec.load(dataset_dir)
    files = split_files(dataset_dir, split)
    parse_spec = spec.tfrecord_features(with_label=True)
    dtypes = _model_dtypes(spec)
    label = spec.label

    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 4),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not training or seed is not None,
    )
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def parse(serialized: tf.Tensor):
        parsed = tf.io.parse_example(serialized, parse_spec)
        features = {name: tf.cast(parsed[name], dtype) for name, dtype in dtypes.items()}
        return features, parsed[label]

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    n = spec.split_sizes.get(split)
    if n and not repeat:  # a known length gives Keras a real progress bar
        batches = n // batch_size if drop_remainder else -(-n // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    if cache:
        ds = ds.cache()
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


def read_columns(
    dataset_dir: str,
    split: str,
    names: list[str] | None = None,
    *,
    spec: DatasetSpec | None = None,
    batch_size: int = 65536,
) -> dict[str, np.ndarray]:
    """Whole columns of a split as NumPy arrays, in file order.

    Args:
        names: feature names to read; defaults to the label, ``group_id`` and, when the
            dataset has one, ``oracle_prob``.
    """
    spec = spec or DatasetSpec.load(dataset_dir)
    full = spec.tfrecord_features(with_label=True)
    if names is None:
        names = [spec.label, GROUP_KEY] + ([ORACLE_KEY] if spec.has_oracle else [])
    missing = [n for n in names if n not in full]
    if missing:
        raise KeyError(f"Unknown record features {missing}; known: {sorted(full)}.")
    parse_spec = {n: full[n] for n in names}
    ds = tf.data.TFRecordDataset(split_files(dataset_dir, split))
    ds = ds.batch(batch_size).map(
        lambda s: tf.io.parse_example(s, parse_spec), num_parallel_calls=tf.data.AUTOTUNE
    )
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for batch in ds.prefetch(2):
        for n in names:
            chunks[n].append(batch[n].numpy())
    return {n: np.concatenate(c) if c else np.zeros((0,)) for n, c in chunks.items()}
