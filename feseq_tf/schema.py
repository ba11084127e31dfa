"""Dataset spec: the contract between the data pipelines, the input pipeline and the model.

A prepared dataset is a directory holding

* ``dataset_spec.json``: this module's :class:`DatasetSpec`;
* ``vocab/<field>.txt``: one raw value per line for every categorical field, in id order
  starting at id 2 (id 0 is padding, id 1 is out-of-vocabulary); a field hashed into
  buckets (``hash_buckets``, :mod:`feseq_tf.hashing`) has none;
* ``{train,valid,test}/part-*.tfrecord``: one ``tf.train.Example`` per sample (see
  :meth:`DatasetSpec.tfrecord_features`);
* ``report.json``: what the pipeline read, dropped and wrote.

Histories are left-padded to ``max_len`` (oldest first, most recent at index
``max_len - 1``), so position ``i`` of a history is ``max_len - i`` steps before the
target; ``hist_len`` says how many trailing entries are real.

A dataset may carry the labels of the history (the option ``feedback`` of the
pipelines): one more sequential field, :data:`FEEDBACK_FIELD`, marked
``history_only`` (its target value is always the unknown id, since the target's label
is what the model predicts). Its vocabulary is :data:`FEEDBACK_VALUES`: id 2 is an
earlier impression that was not clicked, id 3 one that was, id 1 a label unknown at the
target's time (the target itself, and earlier impressions at the target's timestamp).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from typing import Any

from feseq_tf import raw_format
from feseq_tf.hashing import check_hash_buckets
from feseq_tf.strict import check_keys, strict_from_dict

ROLES = ("user", "context", "item")
TYPES = ("categorical", "numeric")
SPLITS = ("train", "valid", "test")

PAD_ID = raw_format.PAD_ID
OOV_ID = raw_format.OOV_ID
NUM_RESERVED_IDS = raw_format.FIRST_VOCABULARY_ID

HIST_SUFFIX = "_list"
HIST_LEN = "hist_len"
GROUP_KEY = "group_id"
ORACLE_KEY = "oracle_prob"
SPEC_FILE = "dataset_spec.json"

#: The history-only field holding the labels of the history's impressions.
FEEDBACK_FIELD = "feedback"
#: Raw values of the feedback field in id order (the labels as text): "0" has id 2
#: (not clicked), "1" id 3 (clicked); a label not known yet has the OOV id 1.
FEEDBACK_VALUES = ("0", "1")
FEEDBACK_UNKNOWN_ID = OOV_ID
#: FieldSpec keys written to dataset_spec.json only where they are set.
_OPTIONAL_KEYS = ("history_only", "hash_buckets")


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One input field.

    Args:
        name: str. Field name, as in the raw data.
        role: str. One of ``"user"``, ``"context"``, ``"item"``.
        type: str. ``"categorical"`` (stored as vocabulary ids) or ``"numeric"``
            (stored min-max scaled with training statistics).
        sequential: bool. Whether the field also has a history list
            ``<name>_list`` (the target value plus the user's previous values).
        vocab_size: int. Categorical only: number of ids including padding and OOV.
        min: float. Numeric only: training minimum used for scaling.
        max: float. Numeric only: training maximum used for scaling.
        history_only: bool. Only the history of the field carries information: its
            target value is not known when the model predicts (the labels of the
            history, :data:`FEEDBACK_FIELD`), stored as the unknown id and not asked
            for by the serving signature. Needs ``sequential`` and a role other than
            ``"item"`` (it is no part of the target item). Defaults to False.
        hash_buckets: int. Categorical only: 0 for a vocabulary field; N >= 1 for a
            field hashed into N buckets (no vocabulary file; ids by
            :func:`feseq_tf.hashing.hashed_ids`, ``vocab_size`` = N + 2). Defaults to 0.
    """

    name: str
    role: str
    type: str
    sequential: bool = False
    vocab_size: int = 0
    min: float = 0.0
    max: float = 1.0
    history_only: bool = False
    hash_buckets: int = 0

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"Field name must be a non-empty string, got {self.name!r}.")
        if self.role not in ROLES:
            raise ValueError(f"Field {self.name!r}: role must be one of {ROLES}, got {self.role!r}.")
        if self.type not in TYPES:
            raise ValueError(f"Field {self.name!r}: type must be one of {TYPES}, got {self.type!r}.")
        if self.type == "categorical" and self.vocab_size < 0:
            raise ValueError(f"Field {self.name!r}: vocab_size must be >= 0, got {self.vocab_size}.")
        if self.type == "numeric" and not self.max >= self.min:
            raise ValueError(
                f"Field {self.name!r}: max ({self.max}) must be >= min ({self.min})."
            )
        if self.hash_buckets != 0:
            buckets = check_hash_buckets(self.name, self.hash_buckets)
            if self.type != "categorical":
                raise ValueError(
                    f"Field {self.name!r}: hash_buckets applies to categorical fields only, "
                    f"got hash_buckets={buckets} on a {self.type} field."
                )
            if self.vocab_size != buckets + NUM_RESERVED_IDS:
                raise ValueError(
                    f"Field {self.name!r}: a field hashed into {buckets} buckets has "
                    f"vocab_size {buckets + NUM_RESERVED_IDS} (the buckets plus the "
                    f"{NUM_RESERVED_IDS} reserved ids), got vocab_size={self.vocab_size}."
                )
        if self.history_only and (not self.sequential or self.role == "item"):
            raise ValueError(
                f"Field {self.name!r}: history_only needs sequential=True and a role other "
                f"than 'item', got sequential={self.sequential!r}, role={self.role!r}."
            )

    @property
    def is_categorical(self) -> bool:
        return self.type == "categorical"

    @property
    def hist_name(self) -> str:
        return self.name + HIST_SUFFIX

    @property
    def is_hashed(self) -> bool:
        """Whether the field's ids are hash buckets (it has no vocabulary file)."""
        return self.hash_buckets > 0


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything the model and the input pipeline need to know about a dataset.

    Args:
        name: str. Dataset name (``"eleme"``, ``"synthetic"``...).
        fields: tuple of FieldSpec. Non-sequential fields and sequential fields, in
            the order the model lays out its field axis.
        max_len: int. Maximum history length L.
        label: str. Name of the binary label.
        time_field: str. Name of the integer timestamp (the history times are
            ``<time_field>_list``).
        user_key: str. Raw column identifying the user (histories group by it).
        time_unit: float. Divisor applied to time differences before clipping.
        time_clip: int. Time intervals are clipped to ``[0, time_clip]`` units.
        has_oracle: bool. Whether the records carry the true click probability.
        split_sizes: dict. Number of samples per split.
        extra: dict. Free-form provenance (pipeline options).
    """

    name: str
    fields: tuple[FieldSpec, ...]
    max_len: int
    label: str = "label"
    time_field: str = "times"
    user_key: str = "user_id"
    time_unit: float = 1.0
    time_clip: int = 4000
    has_oracle: bool = False
    split_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}.")
        if self.time_unit <= 0:
            raise ValueError(f"time_unit must be > 0, got {self.time_unit}.")
        if self.time_clip < 1:
            raise ValueError(f"time_clip must be >= 1, got {self.time_clip}.")
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Duplicate field names in dataset spec: {dupes}.")
        reserved = {self.label, self.time_field, HIST_LEN, GROUP_KEY, ORACLE_KEY}
        clash = sorted(reserved & set(names))
        if clash:
            raise ValueError(f"Field names {clash} clash with reserved feature names.")
        if not self.sequential_fields:
            raise ValueError("A dataset spec needs at least one sequential field.")
        if not self.target_item_fields:
            raise ValueError("A dataset spec needs at least one sequential field with role 'item'.")

    # ---- views -------------------------------------------------------------------
    @property
    def non_sequential_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if not f.sequential)

    @property
    def sequential_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.sequential)

    @property
    def target_item_fields(self) -> tuple[FieldSpec, ...]:
        """Sequential item fields: the target item's own description."""
        return tuple(f for f in self.fields if f.sequential and f.role == "item")

    @property
    def history_only_fields(self) -> tuple[FieldSpec, ...]:
        """Fields whose target value is unknown at prediction time (the feedback)."""
        return tuple(f for f in self.fields if f.history_only)

    def without_feedback(self) -> DatasetSpec:
        """This spec without its history-only fields: what a model built with
        ``use_feedback=False`` reads (``self`` when there are none)."""
        if not self.history_only_fields:
            return self
        return dataclasses.replace(self, fields=tuple(f for f in self.fields if not f.history_only))

    def model_view(self, model_spec: DatasetSpec | None) -> DatasetSpec:
        """The spec a model built on ``model_spec`` reads from this dataset: this spec,
        or it without its feedback when the model was built without feedback (this spec
        when ``model_spec`` is None: a model that does not say).

        Raises:
            ValueError: when the model was built for other fields or vocabularies.
        """
        if model_spec is None:
            return self
        for view in (self, self.without_feedback()):
            if view.fields == model_spec.fields:
                return view
        raise ValueError(
            f"The model was built for other fields or vocabularies than dataset "
            f"{self.name!r}: model fields {[f.name for f in model_spec.fields]}, dataset "
            f"fields {[f.name for f in self.fields]}."
        )

    @property
    def time_hist_name(self) -> str:
        return self.time_field + HIST_SUFFIX

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"No field named {name!r} in dataset spec {self.name!r}.")

    # ---- TFRecord layout -------------------------------------------------------------
    def tfrecord_features(self, with_label: bool = True) -> dict[str, Any]:
        """The `tf.io.parse_example` spec of one record (imported lazily)."""
        import tensorflow as tf

        L = self.max_len
        spec: dict[str, Any] = {}
        for f in self.fields:
            dtype = tf.int64 if f.is_categorical else tf.float32
            spec[f.name] = tf.io.FixedLenFeature([], dtype)
            if f.sequential:
                spec[f.hist_name] = tf.io.FixedLenFeature([L], dtype)
        spec[self.time_field] = tf.io.FixedLenFeature([], tf.int64)
        spec[self.time_hist_name] = tf.io.FixedLenFeature([L], tf.int64)
        spec[HIST_LEN] = tf.io.FixedLenFeature([], tf.int64)
        spec[GROUP_KEY] = tf.io.FixedLenFeature([], tf.int64)
        if with_label:
            spec[self.label] = tf.io.FixedLenFeature([], tf.float32)
        if self.has_oracle:
            spec[ORACLE_KEY] = tf.io.FixedLenFeature([], tf.float32)
        return spec

    def model_input_names(self) -> list[str]:
        """Names of the tensors the model takes (no label, group or oracle)."""
        names: list[str] = []
        for f in self.fields:
            names.append(f.name)
            if f.sequential:
                names.append(f.hist_name)
        names += [self.time_field, self.time_hist_name, HIST_LEN]
        return names

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        # history_only and hash_buckets are written only where set, so specs without
        # them read (and are written) as before.
        d["fields"] = [
            {k: v for k, v in dataclasses.asdict(f).items() if k not in _OPTIONAL_KEYS or v}
            for f in self.fields
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSpec:
        check_keys(cls, d, where="dataset spec")
        fields = tuple(
            strict_from_dict(FieldSpec, fd, where=f"field #{i} of the dataset spec")
            for i, fd in enumerate(d["fields"])
        )
        return cls(**{**d, "fields": fields})

    def save(self, directory: str) -> str:
        path = os.path.join(directory, SPEC_FILE)
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)
        return path

    @classmethod
    def load(cls, path: str) -> DatasetSpec:
        """Load from a prepared dataset directory or a ``dataset_spec.json`` path.

        Raises:
            FileNotFoundError: there is no spec at ``path``.
            ValueError: the file is not a valid dataset spec (the message names it).
        """
        if os.path.isdir(path):
            path = os.path.join(path, SPEC_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"No dataset spec at {path}: prepare the dataset first "
                "(python -m pipelines.eleme / pipelines.synthetic / pipelines.generic)."
            )
        with open(path) as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not valid JSON ({err}); prepare the dataset again.") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} is not a valid dataset spec: {err}") from None


def read_vocab(dataset_dir: str, field: str) -> list[str]:
    """Raw values of a categorical field in id order (first value has id 2), read by
    the vocabulary file format of :mod:`feseq_tf.raw_format`."""
    return raw_format.read_vocabulary(os.path.join(dataset_dir, "vocab", f"{field}.txt"))


def write_vocab(dataset_dir: str, field: str, values: Iterable[str]) -> str:
    os.makedirs(os.path.join(dataset_dir, "vocab"), exist_ok=True)
    path = os.path.join(dataset_dir, "vocab", f"{field}.txt")
    return raw_format.write_vocabulary(path, values, name=field)
