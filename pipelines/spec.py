"""The pipeline spec: which columns of an impression table are the user, the time, the
label and the fields, and the options of the pipeline (YAML/JSON in and out).

A :class:`PipelineSpec` is what every pipeline hands to
:func:`pipelines.generic.build_dataset`; ``python -m pipelines.generic --spec`` reads
one from a file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from feseq_tf import schema
from feseq_tf.hashing import check_hash_buckets
from feseq_tf.strict import check_keys

NON_SEQUENTIAL_ROLES = ("user", "context")
SEQUENTIAL_ROLES = ("item", "context")


@dataclasses.dataclass(frozen=True)
class FieldConfig:
    """One input column of the impression table.

    Args:
        name: str. Column name; also the feature name in the records.
        type: str. ``"categorical"`` (vocabulary ids) or ``"numeric"`` (min-max scaled).
        role: str. ``"user"`` or ``"context"`` for non-sequential fields, ``"item"`` or
            ``"context"`` for sequential fields. Defaults to ``"user"`` /
            ``"item"`` when omitted in a spec file.
        hash_buckets: int or None. Categorical only: hash the field's values into this
            many buckets instead of building a vocabulary (for id fields too large for
            a table per value: every worker holds every table). The id of a value is
            ``2 + Fingerprint64(value) mod hash_buckets`` (:mod:`feseq_tf.hashing`),
            the same in the records and in the serving signature; missing values keep
            the OOV id 1, ``min_count`` does not apply. None builds a vocabulary.
            Defaults to None.
    """

    name: str
    type: str = "categorical"
    role: str = "user"
    hash_buckets: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Field name must be a non-empty string, got {self.name!r}.")
        if self.type not in schema.TYPES:
            raise ValueError(
                f"Field {self.name!r}: type must be one of {schema.TYPES}, got {self.type!r}."
            )
        if self.hash_buckets is not None:
            check_hash_buckets(self.name, self.hash_buckets)
            if self.type != "categorical":
                raise ValueError(
                    f"Field {self.name!r}: hash_buckets applies to categorical fields only, "
                    f"got hash_buckets={self.hash_buckets!r} on a {self.type} field."
                )

    @classmethod
    def from_dict(cls, d: Any, *, sequential: bool) -> FieldConfig:
        """Build from ``{name, type, role, hash_buckets}`` (or just a name); unknown
        keys raise."""
        if isinstance(d, str):
            d = {"name": d}
        if not isinstance(d, Mapping):
            raise ValueError(f"A field must be a mapping {{name, type, role}}, got {d!r}.")
        if "name" not in d:
            raise ValueError(f"A field needs a 'name', got {dict(d)!r}.")
        check_keys(cls, d, where=f"field {d['name']!r}")
        role = d.get("role", "item" if sequential else "user")
        return cls(
            name=d["name"],
            type=d.get("type", "categorical"),
            role=role,
            hash_buckets=d.get("hash_buckets"),
        )


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
    """How to turn an impression table into a prepared dataset.

    Args:
        name: str. Dataset name written to the dataset spec.
        user_key: str. Column identifying the user; histories group by it and
            ``group_id`` is its dense id. It may also be a field.
        timestamp: str. Integer timestamp column (a datetime column is converted to
            seconds). The records call it by this name and its history ``<name>_list``.
        label: str. 0/1 label column. Defaults to ``"label"``.
        non_sequential_fields: tuple of FieldConfig. User/context fields (no history).
        sequential_fields: tuple of FieldConfig. Item/context fields that get a history
            ``<name>_list``; at least one must have role ``"item"``.
        max_len: int. Maximum history length L. Defaults to 10.
        min_count: int. Categorical values seen fewer times in the training split map
            to OOV. Defaults to 10.
        split_ratios: tuple of 3 numbers. Train/valid/test proportions of the samples
            sorted by time. Defaults to (8, 1, 1).
        time_unit: float. Divisor of time intervals, recorded for the model. Defaults to 1.
        time_clip: int. Clip of time intervals, recorded for the model. Defaults to 4000.
        num_shards: int or None. TFRecord shards of the training split (valid/test get
            proportionally fewer, at least 1). None picks about 100k samples a shard.
        drop_missing: bool. Drop rows with a missing field value (counted as
            ``missing:<field>``). When False, a missing categorical value maps to OOV
            and a missing numeric value is stored as 0.0 (the training minimum).
            Defaults to False.
        shuffle_train: bool. Write the training records in a seeded random order, so
            that a reader's bounded shuffle buffer sees well mixed samples (valid and
            test stay in time order). Defaults to True.
        seed: int. Seed of the training-record order. Defaults to 0.
        timestamp_format: str or None. None: the timestamp column holds integers (or
            is a datetime column). ``"iso8601"``: ISO 8601 text datetimes; any other
            string: a ``strftime`` format. Text datetimes become seconds since the
            epoch (UTC); unparsable ones are dropped as ``non_numeric:<timestamp>``.
            Defaults to None.
        feedback: bool. Add the history-only field ``feedback`` (see
            :data:`feseq_tf.schema.FEEDBACK_FIELD`): ``feedback_list`` holds the label of
            every history impression (id 3 clicked, 2 not clicked), except impressions at
            the target's own timestamp, whose label is written as unknown (id 1), as is
            the target value of every record. Defaults to False.
    """

    name: str
    user_key: str
    timestamp: str
    label: str = "label"
    non_sequential_fields: tuple[FieldConfig, ...] = ()
    sequential_fields: tuple[FieldConfig, ...] = ()
    max_len: int = 10
    min_count: int = 10
    split_ratios: tuple[float, float, float] = (8, 1, 1)
    time_unit: float = 1.0
    time_clip: int = 4000
    num_shards: int | None = None
    drop_missing: bool = False
    shuffle_train: bool = True
    seed: int = 0
    timestamp_format: str | None = None
    feedback: bool = False

    def __post_init__(self) -> None:
        nonseq = tuple(
            f if isinstance(f, FieldConfig) else FieldConfig.from_dict(f, sequential=False)
            for f in self.non_sequential_fields
        )
        seq = tuple(
            f if isinstance(f, FieldConfig) else FieldConfig.from_dict(f, sequential=True)
            for f in self.sequential_fields
        )
        object.__setattr__(self, "non_sequential_fields", nonseq)
        object.__setattr__(self, "sequential_fields", seq)
        object.__setattr__(self, "split_ratios", tuple(self.split_ratios))
        for key in ("name", "user_key", "timestamp", "label"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{key} must be a non-empty string, got {value!r}.")
        for f in nonseq:
            if f.role not in NON_SEQUENTIAL_ROLES:
                raise ValueError(
                    f"Non-sequential field {f.name!r}: role must be one of "
                    f"{NON_SEQUENTIAL_ROLES}, got {f.role!r}."
                )
        for f in seq:
            if f.role not in SEQUENTIAL_ROLES:
                raise ValueError(
                    f"Sequential field {f.name!r}: role must be one of {SEQUENTIAL_ROLES}, "
                    f"got {f.role!r}."
                )
        if not seq:
            raise ValueError("sequential_fields must name at least one field.")
        if not any(f.role == "item" for f in seq):
            raise ValueError("At least one sequential field must have role 'item'.")
        names = [f.name for f in nonseq + seq]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Fields listed twice: {dupes}.")
        for key in ("timestamp", "label"):
            if getattr(self, key) in names:
                raise ValueError(f"The {key} column {getattr(self, key)!r} cannot also be a field.")
        if self.timestamp == self.label:
            raise ValueError(f"timestamp and label are the same column {self.label!r}.")
        if not isinstance(self.feedback, bool):
            raise ValueError(f"feedback must be true or false, got {self.feedback!r}.")
        feedback_names = {schema.FEEDBACK_FIELD, schema.FEEDBACK_FIELD + schema.HIST_SUFFIX}
        taken = sorted(feedback_names & {*names, self.timestamp, self.label, self.user_key})
        if self.feedback and taken:
            raise ValueError(
                f"feedback adds the field {schema.FEEDBACK_FIELD!r}, but the pipeline spec "
                f"already uses the names {taken}: rename those columns."
            )
        _check_int("max_len", self.max_len, 1)
        _check_int("min_count", self.min_count, 1)
        _check_int("time_clip", self.time_clip, 1)
        if self.num_shards is not None:
            _check_int("num_shards", self.num_shards, 1)
        _check_int("seed", self.seed, 0)
        if not isinstance(self.time_unit, (int, float)) or not self.time_unit > 0:
            raise ValueError(f"time_unit must be a number > 0, got {self.time_unit!r}.")
        if (
            len(self.split_ratios) != 3
            or not all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and r >= 0
                for r in self.split_ratios
            )
            or self.split_ratios[0] <= 0
        ):
            raise ValueError(
                f"split_ratios must be 3 numbers >= 0 (train > 0), got {self.split_ratios!r}."
            )

    @property
    def fields(self) -> tuple[FieldConfig, ...]:
        """Non-sequential fields then sequential fields, each in spec order."""
        return self.non_sequential_fields + self.sequential_fields

    @property
    def required_columns(self) -> list[str]:
        cols = [self.user_key, self.timestamp, self.label] + [f.name for f in self.fields]
        return list(dict.fromkeys(cols))

    def dataset_spec(
        self,
        fields: Sequence[schema.FieldSpec],
        *,
        has_oracle: bool,
        split_sizes: Mapping[str, int],
        extra: Mapping[str, Any],
    ) -> schema.DatasetSpec:
        """The dataset spec of what this pipeline prepared (``fields`` from
        :func:`pipelines.transforms.field_specs`)."""
        return schema.DatasetSpec(
            name=self.name,
            fields=tuple(fields),
            max_len=self.max_len,
            label=self.label,
            time_field=self.timestamp,
            user_key=self.user_key,
            time_unit=float(self.time_unit),
            time_clip=int(self.time_clip),
            has_oracle=has_oracle,
            split_sizes=dict(split_sizes),
            extra={"pipeline": self.to_dict(), **dict(extra)},
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["non_sequential_fields"] = [_field_dict(f) for f in self.non_sequential_fields]
        d["sequential_fields"] = [_field_dict(f) for f in self.sequential_fields]
        d["split_ratios"] = list(self.split_ratios)
        if not self.feedback:  # written only when on: specs without it read as before
            del d["feedback"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PipelineSpec:
        """Build from a mapping (a parsed YAML/JSON file); unknown keys raise."""
        check_keys(cls, d, where="pipeline spec")
        if "sequential_fields" not in d:
            raise ValueError("The pipeline spec is missing required keys ['sequential_fields'].")
        return cls(**d)

    @classmethod
    def load(cls, path: str) -> PipelineSpec:
        """Load a YAML or JSON spec file."""
        import yaml

        with open(path) as fh:
            d = yaml.safe_load(fh)
        try:
            return cls.from_dict(d)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def save(self, path: str) -> str:
        """Write the spec as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
        d = self.to_dict()
        with open(path, "w") as fh:
            if path.endswith((".yaml", ".yml")):
                import yaml

                yaml.safe_dump(d, fh, sort_keys=False)
            else:
                json.dump(d, fh, indent=2)
        return path


def _field_dict(f: FieldConfig) -> dict[str, Any]:
    """A field as a spec file writes it (``hash_buckets`` only where set, so specs
    without hashing read and write as before)."""
    d = dataclasses.asdict(f)
    if d["hash_buckets"] is None:
        del d["hash_buckets"]
    return d


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
