"""Hash buckets of categorical fields: the id rule that the pipelines and the serving
graph both apply, written once.

A categorical field with ``hash_buckets = N`` has no vocabulary: every present value
gets the id ``FIRST_VOCABULARY_ID + Fingerprint64(value) mod N``, where ``value`` is
the raw value as :func:`feseq_tf.raw_format.clean` reads it (the canonical string,
trimmed; ``12.0`` -> ``"12"``, ``" a "`` -> ``"a"``) encoded as UTF-8, and
Fingerprint64 is FarmHash's 64-bit fingerprint, the hash of
``tf.strings.to_hash_bucket_fast``. The reserved ids keep their meaning (0 padding,
1 missing), so the field's table has ``N + NUM_RESERVED_IDS`` rows. No value is rare
or unseen: ``min_count`` does not apply, a value never seen in training gets its
bucket too, and distinct values may share a bucket.

The pipelines call :func:`hashed_ids` eagerly on the distinct values of a column (in
chunks); the serving graph calls it on the request's trimmed strings. The fingerprint
is stable across TensorFlow versions and platforms (it is a published function), so a
model keeps its ids from training to serving.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from feseq_tf import raw_format

#: Values hashed in one TensorFlow call by :func:`hashed_ids_numpy`.
CHUNK_SIZE = 1 << 20


def check_hash_buckets(field: str, value: Any) -> int:
    """``value`` as the number of hash buckets of ``field``.

    Raises:
        ValueError: naming the field, unless ``value`` is an integer >= 1.
    """
    if not _is_bucket_count(value):
        raise ValueError(f"Field {field!r}: hash_buckets must be an integer >= 1, got {value!r}.")
    return int(value)


def _is_bucket_count(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def hashed_ids(values: Any, buckets: int) -> Any:
    """Trimmed, present raw strings -> their ids, int64, the shape of ``values``.

    Args:
        values: string tensor (or anything ``tf.constant`` takes) of values as
            :func:`feseq_tf.raw_format.clean` reads them; missing values are the
            caller's to map to ``OOV_ID``.
        buckets: int. The field's ``hash_buckets`` (>= 1).

    Returns:
        int64 tensor of ids in ``[FIRST_VOCABULARY_ID, FIRST_VOCABULARY_ID + buckets)``.
    """
    import tensorflow as tf

    if not _is_bucket_count(buckets):
        raise ValueError(f"buckets must be an integer >= 1, got {buckets!r}.")
    return tf.strings.to_hash_bucket_fast(values, int(buckets)) + raw_format.FIRST_VOCABULARY_ID


def hashed_ids_numpy(values: Sequence[str] | np.ndarray, buckets: int) -> np.ndarray:
    """:func:`hashed_ids` of a list or array of Python strings, in chunks of
    :data:`CHUNK_SIZE` (int64 numpy array)."""
    values = np.asarray(values, dtype=object)
    out = np.empty(len(values), dtype=np.int64)
    for start in range(0, len(values), CHUNK_SIZE):
        chunk = values[start : start + CHUNK_SIZE]
        out[start : start + len(chunk)] = hashed_ids(chunk.astype(str).tolist(), buckets).numpy()
    return out
