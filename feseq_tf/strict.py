"""Strict reading of a mapping (a parsed JSON/YAML file) into a dataclass.

A key the dataclass does not have is an error that names it and the known keys, a
key it has no default for must be given, and every other field takes its default.
Standard library only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def check_keys(cls: type, data: Any, *, where: str) -> None:
    """Checks that ``data`` can build the dataclass ``cls``, without building it.

    For readers that convert some values first (nested specs): they check the keys
    here, convert, then call ``cls(**converted)``.

    Args:
        cls: type. A dataclass.
        data: Mapping. Its keys are ``cls``'s field names.
        where: str. What ``data`` is, for the messages (e.g. ``"model config"``).

    Raises:
        ValueError: ``data`` is not a mapping, has keys ``cls`` lacks (the message
            names them and the known keys), or lacks a key ``cls`` has no default for.
    """
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise ValueError(f"`cls` must be a dataclass type, got cls={cls!r}.")
    if not isinstance(data, Mapping):
        raise ValueError(f"The {where} must be a mapping, got {type(data).__name__}: {data!r}.")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    known = sorted(f.name for f in fields)
    unknown = sorted(set(data) - set(known), key=str)
    if unknown:
        raise ValueError(f"Unknown keys in {where}: {unknown}; known keys: {known}.")
    missing = [
        f.name
        for f in fields
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"The {where} is missing required keys {missing}.")


def strict_from_dict(cls: type[T], data: Any, *, where: str) -> T:
    """The dataclass ``cls`` built from ``data``, rejecting unknown keys.

    Keys left out take the field's default; the dataclass' own checks
    (``__post_init__``) then run as usual.

    Args:
        cls: type. A dataclass.
        data: Mapping. Field values by name.
        where: str. What ``data`` is, for the messages (e.g. ``"model config"``).

    Returns:
        ``cls(**data)``.

    Raises:
        ValueError: as :func:`check_keys`, or from ``cls``'s own validation.

    Example:
        >>> strict_from_dict(TrainConfig, {"epochs": 3}, where="train config").epochs
        3
        >>> strict_from_dict(TrainConfig, {"epoch": 3}, where="train config")
        ValueError: Unknown keys in train config: ['epoch']; known keys: [...]
    """
    check_keys(cls, data, where=where)
    return cls(**data)
