"""How often training should show FESeq an unknown user: the ``"auto"`` id dropout rates.

A log split by time can put users in the validation and test splits that the training
split never saw (or saw too rarely for the vocabulary): their ids are the OOV id there.
On a log where most users are known in training and unknown later, as on a ratings log
where each user rates in one burst, the model meets an OOV user id in a few training
samples and in most test samples, and it has not learnt what to predict without the id.
The remedy is to train on the mix the model will be evaluated on: drop known ids to OOV
in training (:class:`feseq_tf.layers.IdDropout`) at the rate that makes the share of OOV
ids in training equal to the validation split's.

With ``a`` the share of OOV ids of a field in the training split and ``b`` in the
validation split, dropping the known ids at rate ``r`` gives a training share
``a + (1 - a) r``; equal to ``b`` at ``r = (b - a) / (1 - a)``, and 0 when the validation
split has no more OOV ids than training (a random split, or users that stay). The
validation split stands for the data the model will serve: the test split is never read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from feseq_tf.schema import OOV_ID, DatasetSpec

#: Highest rate the rule gives (the layer needs a rate below 1).
MAX_RATE = 0.95
#: Rates are rounded to this many decimals (a stable config across reruns).
DECIMALS = 3


def id_dropout_fields(spec: DatasetSpec) -> tuple[str, ...]:
    """The fields id dropout applies to: the non-sequential categorical ones."""
    return tuple(f.name for f in spec.non_sequential_fields if f.is_categorical)


def shift_rate(train_oov: float, valid_oov: float) -> float:
    """``(b - a) / (1 - a)`` clipped to [0, MAX_RATE] and rounded; 0 if ``a`` is 1.

    Example:
        >>> shift_rate(0.0, 0.85)
        0.85
        >>> shift_rate(0.6, 0.7)
        0.25
    """
    for name, v in (("train_oov", train_oov), ("valid_oov", valid_oov)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be a share in [0, 1], got {v!r}.")
    if train_oov >= 1.0:
        return 0.0
    rate = (valid_oov - train_oov) / (1.0 - train_oov)
    return round(float(min(MAX_RATE, max(0.0, rate))), DECIMALS)


def oov_shares(dataset_dir: str, split: str, spec: DatasetSpec, names: tuple[str, ...]) -> dict[str, float]:
    """Share of the OOV id in each named categorical column of one split."""
    from feseq_tf.data import read_columns

    if not names:
        return {}
    columns = read_columns(dataset_dir, split, list(names), spec=spec)
    out = {}
    for name in names:
        values = np.asarray(columns[name])
        out[name] = float(np.mean(values == OOV_ID)) if values.size else 0.0
    return out


def id_dropout_rates(dataset_dir: str, spec: DatasetSpec | None = None) -> dict[str, Any]:
    """Per field, the id dropout rate that gives training the validation split's OOV share.

    Args:
        dataset_dir: str. A prepared dataset directory (its train and valid splits are read).
        spec: DatasetSpec. Defaults to the directory's.

    Returns:
        ``{"rates": {field: rate}, "train_oov": {...}, "valid_oov": {...}}`` over
        :func:`id_dropout_fields`; a field whose rate is 0 is kept (the table of what
        was measured), and ``rates`` goes to ``ModelConfig.id_dropout``.
    """
    spec = spec or DatasetSpec.load(dataset_dir)
    names = id_dropout_fields(spec)
    train = oov_shares(dataset_dir, "train", spec, names)
    valid = oov_shares(dataset_dir, "valid", spec, names)
    rates = {n: shift_rate(train[n], valid[n]) for n in names}
    return {"rates": rates, "train_oov": train, "valid_oov": valid}
