"""The sequence's padding mask and time intervals, from the timestamps and history length."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="feseq_tf")
class SequenceFeatures(keras.layers.Layer):
    """Padding mask and time intervals of the [history..., target] sequence.

    Histories are left-padded: with `hist_len = n`, positions `L - n .. L - 1` are
    real, position `L` is the target. The interval of position `i` is
    `max(t - t_i, 0) / time_unit` (paper section 3.3), 0 on padding.

    Args:
        max_len: int. History length L (>= 1).
        time_unit: float. Divisor of the time differences (> 0). Defaults to 1.
        use_history: bool. False gives the target position alone. Defaults to True.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        times: int64 [B]. Target timestamp.
        times_list: int64 [B, L]. History timestamps, left-padded.
        hist_len: int32 [B]. Number of real history entries.

    Returns:
        A dict with ``padding_mask`` (bool [B, T], True = real; the target, last, is
        always real) and ``time_intervals`` (float32 [B, T], (t - t_i) / time_unit,
        0 for the target). With ``use_history=False``, T = 1 (the target alone).
    """

    def __init__(self, max_len: int, time_unit: float = 1.0, use_history: bool = True, **kwargs):
        super().__init__(**kwargs)
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}.")
        if not time_unit > 0:
            raise ValueError(f"time_unit must be > 0, got {time_unit}.")
        self.max_len = max_len
        self.time_unit = float(time_unit)
        self.use_history = use_history

    def call(self, times, times_list, hist_len):
        batch = ops.shape(times)[0]
        if not self.use_history:
            return {
                "padding_mask": ops.ones((batch, 1), dtype="bool"),
                "time_intervals": ops.zeros((batch, 1), dtype="float32"),
            }
        L = self.max_len
        positions = ops.arange(L + 1, dtype="int32")[None, :]
        first_real = L - ops.cast(hist_len, "int32")[:, None]
        mask = ops.logical_or(positions >= first_real, positions == L)
        all_times = ops.concatenate([times_list, times[:, None]], axis=1)
        delta = ops.cast(times[:, None] - all_times, "float32") / self.time_unit
        delta = ops.where(mask, ops.maximum(delta, 0.0), ops.zeros_like(delta))
        return {"padding_mask": mask, "time_intervals": delta}

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "max_len": self.max_len,
            "time_unit": self.time_unit,
            "use_history": self.use_history,
        }
