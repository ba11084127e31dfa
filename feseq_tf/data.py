"""tf.data input: prepared TFRecord shards -> batches of (features dict, label).

The parse spec is derived once from the dataset spec. The pipeline follows the usual
high-throughput order: list files -> interleave TFRecordDataset -> shuffle examples
(training only) -> batch -> ``tf.io.parse_example`` on whole batches -> prefetch.
Evaluation input (``training=False``) reads the files one after the other instead of
interleaving them, so that its examples come in exactly the order of
:func:`read_columns`, against whose labels the predictions are scored.

Every reader takes a prepared dataset either as a :class:`feseq_tf.dataset.PreparedDataset`
(its spec and file lists read once, as a training run does) or as its directory.
"""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf

from feseq_tf.dataset import PreparedDataset, as_prepared, list_split_files
from feseq_tf.schema import GROUP_KEY, ORACLE_KEY, DatasetSpec


def split_files(dataset_dir: str | PreparedDataset, split: str) -> list[str]:
    """Sorted TFRecord shard paths of one split (at least one).

    Args:
        dataset_dir: str or PreparedDataset. A prepared dataset or its directory (listed
            now; the object's lists were made when it was opened).
        split: str. ``"train"``, ``"valid"`` or ``"test"``.

    Raises:
        ValueError: an unknown split.
        FileNotFoundError: the split has no shards.
    """
    if isinstance(dataset_dir, PreparedDataset):
        return dataset_dir.split_files(split)
    return list(list_split_files(dataset_dir, split, required=True))


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


def _parser(spec: DatasetSpec):
    """Batch of serialized examples -> (features in the model's dtypes, label)."""
    parse_spec = spec.tfrecord_features(with_label=True)
    dtypes = _model_dtypes(spec)

    def parse(serialized: tf.Tensor):
        parsed = tf.io.parse_example(serialized, parse_spec)
        features = {name: tf.cast(parsed[name], dtype) for name, dtype in dtypes.items()}
        return features, parsed[spec.label]

    return parse


def make_dataset(
    dataset_dir: str | PreparedDataset,
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
        dataset_dir: str or PreparedDataset. A prepared dataset, or its directory (see
            docs/data_format.md).
        split: str. ``"train"``, ``"valid"`` or ``"test"``.
        batch_size: int. Examples per batch.
        training: bool. Shuffle shards and examples (seeded by ``seed``). Defaults to False,
            in which case examples come in file order, so predictions line up with
            :func:`read_columns`.
        spec: DatasetSpec. Defaults to the dataset's (its ``dataset_spec.json``).
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
    dataset = as_prepared(dataset_dir)
    spec = spec or dataset.spec
    files = dataset.split_files(split)
    if training:
        ds = tf.data.Dataset.from_tensor_slices(files)
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(len(files), 4),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=seed is not None,
        )
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    else:
        # File after file, like read_columns: interleaving would alternate the files'
        # records, and predictions of a split with several shards would no longer line
        # up with its labels. Parsing, the costly part, stays parallel (below).
        ds = tf.data.TFRecordDataset(files, buffer_size=8 << 20)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    ds = ds.map(_parser(spec), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    n = spec.split_sizes.get(split)
    if n and not repeat:  # a known length gives Keras a real progress bar
        batches = n // batch_size if drop_remainder else -(-n // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    if cache:
        ds = ds.cache()
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


def epoch_seed(seed: int, epoch):
    """The shuffle seed of one epoch: a function of ``(seed, epoch)`` only.

    Works on Python ints and on int64 tensors (inside a tf.data graph), so the data order
    of epoch ``k`` does not depend on how many epochs this process has already run.
    """
    return seed * 1_000_003 + epoch


def make_training_stream(
    dataset_dir: str | PreparedDataset,
    batch_size: int,
    *,
    spec: DatasetSpec | None = None,
    seed: int = 0,
    start_epoch: int = 0,
    shuffle_buffer: int = 100_000,
    shard_index: int = 0,
    shard_count: int = 1,
) -> tf.data.Dataset:
    """Endless training batches, epoch after epoch, each epoch's order keyed to (seed, epoch).

    Epoch ``e`` shuffles the shard files and then the examples with
    :func:`epoch_seed` ``(seed, e)`` and batches its examples on their own (its last,
    partial batch is kept), so a run resumed at epoch ``k`` (``start_epoch=k``) sees
    exactly the batches an uninterrupted run sees from epoch ``k`` on. Train it with
    ``steps_per_epoch = ceil(examples / batch_size)`` (see :func:`steps_per_epoch`).

    Args:
        dataset_dir: str or PreparedDataset. A prepared dataset, or its directory.
        batch_size: int. Examples per batch (per input pipeline).
        spec: DatasetSpec. Defaults to the dataset's (its ``dataset_spec.json``).
        seed: int. The run's seed.
        start_epoch: int. The first epoch of the stream (the epoch a resumed run restarts).
        shuffle_buffer: int. Example shuffle buffer size.
        shard_index, shard_count: int. Read only the training files ``shard_index``,
            ``shard_index + shard_count``, ... (one input pipeline of several workers).
            With fewer files than pipelines it shards by example; see :func:`shard_files`.

    Returns:
        A ``tf.data.Dataset`` of ``(features, label)`` batches like :func:`make_dataset`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
        raise ValueError(f"start_epoch must be a non-negative integer, got {start_epoch!r}.")
    dataset = as_prepared(dataset_dir)
    spec = spec or dataset.spec
    files, by_example = shard_files(dataset.split_files("train"), shard_index, shard_count)
    parse = _parser(spec)
    file_tensor = tf.constant(files)
    n_files = len(files)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        key = epoch_seed(tf.constant(seed, tf.int64), epoch)
        ds = tf.data.Dataset.from_tensor_slices(file_tensor).shuffle(n_files, seed=key)
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(n_files, 4),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if by_example:  # the same order on every worker, so the shares are disjoint
            ds = ds.shard(shard_count, shard_index)
        return ds.shuffle(shuffle_buffer, seed=key).batch(batch_size)

    ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(one_epoch)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def shard_files(files: list[str], shard_index: int, shard_count: int) -> tuple[list[str], bool]:
    """The files of input pipeline ``shard_index`` of ``shard_count``, and whether to shard by example.

    With at least ``shard_count`` files each pipeline reads every ``shard_count``-th file
    (the ``AutoShardPolicy.FILE`` layout). With fewer, every pipeline reads all files and
    keeps every ``shard_count``-th example (``DATA``): correct but each worker reads the
    whole split, so a warning says to write more shards.
    """
    if isinstance(shard_count, bool) or not isinstance(shard_count, int) or shard_count < 1:
        raise ValueError(f"shard_count must be a positive integer, got {shard_count!r}.")
    if isinstance(shard_index, bool) or not isinstance(shard_index, int) or not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index must be in [0, {shard_count}), got {shard_index!r}.")
    if shard_count == 1:
        return list(files), False
    if len(files) >= shard_count:
        return list(files[shard_index::shard_count]), False
    warnings.warn(
        f"{len(files)} training file(s) for {shard_count} input pipelines: every worker reads "
        "all files and keeps its share of the examples. Prepare the dataset with at least as "
        "many shards as workers (--num-shards, or num_shards in a pipeline spec) so each "
        "worker reads only its own files.",
        stacklevel=2,
    )
    return list(files), True


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """Batches in one epoch of :func:`make_training_stream` (the last one partial)."""
    return -(-examples // batch_size)


def count_examples(dataset_dir: str | PreparedDataset, split: str) -> int:
    """Examples of a split: from the spec when it records them, else counted once
    (:meth:`feseq_tf.dataset.PreparedDataset.examples`)."""
    return as_prepared(dataset_dir).examples(split)


def read_columns(
    dataset_dir: str | PreparedDataset,
    split: str,
    names: list[str] | None = None,
    *,
    spec: DatasetSpec | None = None,
    batch_size: int = 65536,
) -> dict[str, np.ndarray]:
    """Whole columns of a split as NumPy arrays, in file order.

    Args:
        dataset_dir: str or PreparedDataset. A prepared dataset, or its directory.
        split: str. ``"train"``, ``"valid"`` or ``"test"``.
        names: feature names to read; defaults to the label, ``group_id`` and, when the
            dataset has one, ``oracle_prob``.
        spec: DatasetSpec. Defaults to the dataset's.
        batch_size: int. Records parsed at a time.

    Returns:
        ``{name: array}`` over the whole split.

    Raises:
        KeyError: a name that is not a record feature.
    """
    dataset = as_prepared(dataset_dir)
    spec = spec or dataset.spec
    full = spec.tfrecord_features(with_label=True)
    if names is None:
        names = [spec.label, GROUP_KEY] + ([ORACLE_KEY] if spec.has_oracle else [])
    missing = [n for n in names if n not in full]
    if missing:
        raise KeyError(f"Unknown record features {missing}; known: {sorted(full)}.")
    parse_spec = {n: full[n] for n in names}
    ds = tf.data.TFRecordDataset(dataset.split_files(split))
    ds = ds.batch(batch_size).map(
        lambda s: tf.io.parse_example(s, parse_spec), num_parallel_calls=tf.data.AUTOTUNE
    )
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for batch in ds.prefetch(2):
        for n in names:
            chunks[n].append(batch[n].numpy())
    return {n: np.concatenate(c) if c else np.zeros((0,)) for n, c in chunks.items()}
