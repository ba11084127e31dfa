"""Attention summaries for TensorBoard (paper section 4.5, Figs. 5-8).

:class:`AttentionSummaries` runs the model on a fixed probe batch of validation data
every ``every`` epochs (or training steps) and writes, for the project's TensorBoard
plugin (``feseq_tf.tensorboard_plugin``), labelled matrices under these tags:

* ``attention/input_fields``: field x field attention of the last input interacting
  layer (rows: query field, columns: key field; 23 x 23 for Ele.me), averaged over the
  probe samples and their real (non-padded) positions, and over heads; with several
  heads also ``attention/input_fields/head_<h>``;
* ``attention/target_item_fields``: the same for the last target item interacting
  layer (averaged over the probe samples and heads);
* ``attention/pooling_samples``: sequence-pooling attention, probe samples x positions
  (the samples with the longest histories first, as in Figs. 7-8);
* ``attention/pooling_mean``: its mean over the samples in which a position holds a
  real behaviour (1 x positions);
* ``attention/pooling_relative``: the same mean of ``weight * n_real`` (the weight
  relative to a uniform share over the sample's real positions: 1 = uniform). Short
  histories give each of their few positions a large weight; this view removes that
  effect, which otherwise makes recent positions look important in any model;
* ``attention/sequence_head_<h>``: self-attention of each head of the last Transformer
  layer, positions x positions (row: query position), averaged over the probe samples
  in which the query position is real.

Positions are labelled ``-L .. -1`` (behaviours before the target, most recent last)
and ``target``. A mean over no real entries (a position no probe sample reaches) is
written as 0. The matrices themselves come from :func:`attention_matrices`, which the
plots and notebooks use too.

Example:
>>> cb = AttentionSummaries.from_dataset(dataset_dir, "runs/feseq/logs/attention")
>>> model.fit(train_ds, epochs=5, callbacks=[cb])
>>> # tensorboard --logdir runs/feseq/logs   -> tab "FESeq attention"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from feseq_tf.config import ModelConfig
from feseq_tf.schema import HIST_LEN, DatasetSpec
from feseq_tf.tensorboard_plugin.metadata import MatrixInfo

UNITS = ("epoch", "step")
SUMMARY_SUBDIR = "attention"
"""Default run name of the summaries, under the training run's ``logs/`` directory."""

TAG_INPUT_FIELDS = "attention/input_fields"
TAG_TARGET_FIELDS = "attention/target_item_fields"
TAG_POOLING_SAMPLES = "attention/pooling_samples"
TAG_POOLING_MEAN = "attention/pooling_mean"
TAG_POOLING_RELATIVE = "attention/pooling_relative"
TAG_SEQUENCE_HEAD = "attention/sequence_head_{}"
TARGET_LABEL = "target"


@dataclasses.dataclass(frozen=True)
class AttentionMatrix:
    """A labelled matrix ready to be written or plotted."""

    tag: str
    values: np.ndarray
    info: MatrixInfo


# ---- labels ----------------------------------------------------------------------------
def input_field_names(spec: DatasetSpec, config: ModelConfig) -> list[str]:
    """Names along the field axis of the input interacting layer.

    Non-sequential then sequential fields when ``config.nonseq_in_interaction``, else
    the sequential fields only (the model's layout), then ``history_match`` when the
    model has that field.
    """
    from feseq_tf.models.feseq import match_fields_of

    seq = [f.name for f in spec.sequential_fields]
    if match_fields_of(spec, config):
        seq.append("history_match")
    if config.nonseq_in_interaction:
        return [f.name for f in spec.non_sequential_fields] + seq
    return seq


def position_labels(num_positions: int) -> list[str]:
    """``["-L", ..., "-1", "target"]`` for ``num_positions = L + 1`` positions."""
    if num_positions < 1:
        raise ValueError(f"num_positions must be >= 1, got {num_positions}.")
    return [f"-{num_positions - 1 - i}" for i in range(num_positions - 1)] + [TARGET_LABEL]


def position_mask(hist_len: np.ndarray, num_positions: int) -> np.ndarray:
    """bool ``[B, T]``, True where a position holds a real behaviour or the target.

    Histories are left-padded (schema), so the last ``hist_len`` history positions are
    real; the target (last position) always is.
    """
    hist_len = np.asarray(hist_len).reshape(-1, 1)
    positions = np.arange(num_positions)[None, :]
    return (positions >= (num_positions - 1) - hist_len) | (positions == num_positions - 1)


def _weighted_mean(values: np.ndarray, weights: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """Mean of ``values`` over ``axis`` with broadcastable ``weights``; 0 where no weight."""
    weights = np.broadcast_to(weights, values.shape).astype(np.float64)
    total = weights.sum(axis=axis)
    summed = (values * weights).sum(axis=axis)
    return np.where(total > 0, summed / np.maximum(total, 1e-12), 0.0)


# ---- the matrices ----------------------------------------------------------------------
def attention_matrices(
    outputs: Mapping[str, Any],
    hist_len: np.ndarray,
    spec: DatasetSpec,
    config: ModelConfig,
    pooling_samples: int = 32,
) -> list[AttentionMatrix]:
    """Labelled, averaged attention matrices from ``FESeq.attention_model()`` outputs.

    Args:
        outputs: dict of arrays. The attention model's outputs on a probe batch
            (``input_field_attention`` [B, T, H, F, F], ``target_field_attention``
            [B, H, n, n], ``sequence_attention`` [B, heads, T, T], ``pooling_attention``
            [B, T]); missing entries (architectures without them) are skipped.
        hist_len: int array [B]. Real history length of each probe sample.
        spec: DatasetSpec. Field names and ``max_len``.
        config: ModelConfig. Field layout (``nonseq_in_interaction``, ``use_history``).
        pooling_samples: int. Rows of the samples x positions pooling matrix.
            Defaults to 32.

    Returns:
        A list of :class:`AttentionMatrix`, tags as in this module's docstring.
    """
    if pooling_samples < 1:
        raise ValueError(f"pooling_samples must be >= 1, got {pooling_samples}.")
    arrays = {k: np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float64) for k, v in outputs.items()}
    num_positions = spec.max_len + 1 if config.use_history else 1
    hist_len = np.asarray(hist_len).reshape(-1)
    if not config.use_history:
        hist_len = np.zeros_like(hist_len)
    mask = position_mask(hist_len, num_positions)  # [B, T]
    positions = position_labels(num_positions)
    out: list[AttentionMatrix] = []

    att = arrays.get("input_field_attention")
    if att is not None:
        names = input_field_names(spec, config)
        if att.ndim != 5 or att.shape[1] != num_positions or att.shape[-1] != len(names):
            raise ValueError(
                f"input_field_attention has shape {att.shape}; expected [B, {num_positions}, "
                f"H, {len(names)}, {len(names)}] for fields {names}."
            )
        per_head = _weighted_mean(att, mask[:, :, None, None, None], axis=(0, 1))  # [H, F, F]
        info = MatrixInfo(
            "field", names, names, "query field", "key field",
            "Last input interacting layer: attention of each field (row) over the fields "
            "(columns), mean over probe samples, real positions and heads.",
        )
        out.append(AttentionMatrix(TAG_INPUT_FIELDS, per_head.mean(axis=0), info))
        if per_head.shape[0] > 1:
            for h in range(per_head.shape[0]):
                head_info = dataclasses.replace(
                    info, description=f"Last input interacting layer, head {h}."
                )
                out.append(AttentionMatrix(f"{TAG_INPUT_FIELDS}/head_{h}", per_head[h], head_info))

    att = arrays.get("target_field_attention")
    if att is not None:
        names = [f.name for f in spec.target_item_fields]
        if att.ndim != 4 or att.shape[-1] != len(names):
            raise ValueError(
                f"target_field_attention has shape {att.shape}; expected "
                f"[B, H, {len(names)}, {len(names)}] for fields {names}."
            )
        info = MatrixInfo(
            "field", names, names, "query field", "key field",
            "Last target item interacting layer: attention of each target item field (row) "
            "over the item fields, mean over probe samples and heads.",
        )
        out.append(AttentionMatrix(TAG_TARGET_FIELDS, att.mean(axis=(0, 1)), info))

    att = arrays.get("pooling_attention")
    if att is not None:
        if att.ndim != 2 or att.shape[1] != num_positions:
            raise ValueError(
                f"pooling_attention has shape {att.shape}; expected [B, {num_positions}]."
            )
        order = np.argsort(-hist_len, kind="stable")[:pooling_samples]
        rows = [f"#{i} (len {int(hist_len[i])})" for i in order]
        out.append(AttentionMatrix(
            TAG_POOLING_SAMPLES, att[order],
            MatrixInfo(
                "pooling", rows, positions, "probe sample (history length)", "position",
                "Sequence pooling attention over positions for the probe samples with the "
                "longest histories (each row sums to 1 over its real positions).",
            ),
        ))
        out.append(AttentionMatrix(
            TAG_POOLING_MEAN, _weighted_mean(att, mask, axis=(0,))[None, :],
            MatrixInfo(
                "pooling", ["mean"], positions, "", "position",
                "Sequence pooling attention, mean over the probe samples in which the "
                "position holds a real behaviour.",
            ),
        ))
        n_real = mask.sum(axis=1, keepdims=True)
        out.append(AttentionMatrix(
            TAG_POOLING_RELATIVE, _weighted_mean(att * n_real, mask, axis=(0,))[None, :],
            MatrixInfo(
                "pooling", ["x uniform"], positions, "", "position",
                "Sequence pooling attention relative to a uniform share over the sample's "
                "real positions (1 = uniform), mean over the samples that reach the position.",
            ),
        ))

    att = arrays.get("sequence_attention")
    if att is not None:
        if att.ndim != 4 or att.shape[-1] != num_positions:
            raise ValueError(
                f"sequence_attention has shape {att.shape}; expected "
                f"[B, heads, {num_positions}, {num_positions}]."
            )
        per_head = _weighted_mean(att, mask[:, None, :, None], axis=(0,))  # [heads, T, T]
        for h in range(per_head.shape[0]):
            out.append(AttentionMatrix(
                TAG_SEQUENCE_HEAD.format(h), per_head[h],
                MatrixInfo(
                    "sequence", positions, positions, "query position", "key position",
                    f"Sequence refiner (last Transformer layer), head {h}: attention of each "
                    "position (row) over positions, mean over the probe samples in which "
                    "the query position is real.",
                ),
            ))
    return out


# ---- the probe batch -------------------------------------------------------------------
def probe_batch(
    dataset_dir: str, split: str = "valid", probe_size: int = 512, spec: DatasetSpec | None = None
) -> dict[str, np.ndarray]:
    """The first ``probe_size`` examples of a split, as model inputs (NumPy arrays).

    Raises:
        ValueError: if ``probe_size`` < 1 or the split is empty.
    """
    if probe_size < 1:
        raise ValueError(f"probe_size must be >= 1, got {probe_size}.")
    from feseq_tf.data import make_dataset

    spec = spec or DatasetSpec.load(dataset_dir)
    ds = make_dataset(dataset_dir, split, probe_size, spec=spec)
    for features, _ in ds.take(1):
        return {name: value.numpy() for name, value in features.items()}
    raise ValueError(f"Split {split!r} of {dataset_dir!r} has no examples for a probe batch.")


# ---- the callback ----------------------------------------------------------------------
class AttentionSummaries(keras.callbacks.Callback):
    """Writes FESeq's attention heatmaps for the TensorBoard plugin while it trains.

    Args:
        log_dir: str. Directory of the summaries (one TensorBoard run), e.g.
            ``<output_dir>/logs/attention``.
        probe: dict of arrays. A fixed batch of model inputs (validation data), e.g.
            from :func:`probe_batch`; keys that are not model inputs are ignored.
        every: int. Write every ``every`` epochs or steps. Defaults to 1.
        unit: str. ``"epoch"`` (summary step = epochs completed) or ``"step"`` (summary
            step = optimizer steps completed). Defaults to ``"epoch"``.
        pooling_samples: int. Rows of the samples x positions pooling matrix.
            Defaults to 32.
        write_at_start: bool. Also write the untrained model's attention at step 0
            (a reference for the later steps). Defaults to True.

    The model must be a :class:`feseq_tf.models.feseq.FESeq` (it needs
    ``attention_model()``, ``spec`` and ``config``).
    """

    def __init__(
        self,
        log_dir: str,
        probe: Mapping[str, Any],
        *,
        every: int = 1,
        unit: str = "epoch",
        pooling_samples: int = 32,
        write_at_start: bool = True,
    ):
        super().__init__()
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}.")
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}.")
        if pooling_samples < 1:
            raise ValueError(f"pooling_samples must be >= 1, got {pooling_samples}.")
        if HIST_LEN not in probe:
            raise ValueError(f"probe must hold the model inputs, including {HIST_LEN!r}.")
        self.log_dir = log_dir
        self.probe = {k: np.asarray(v) for k, v in probe.items()}
        self.every = every
        self.unit = unit
        self.pooling_samples = pooling_samples
        self.write_at_start = write_at_start
        self._writer = None
        self._attention_model: keras.Model | None = None
        self._inputs: dict[str, np.ndarray] = {}
        self.written_steps: list[int] = []

    @classmethod
    def from_dataset(
        cls,
        dataset_dir: str,
        log_dir: str,
        *,
        split: str = "valid",
        probe_size: int = 512,
        spec: DatasetSpec | None = None,
        **kwargs: Any,
    ) -> AttentionSummaries:
        """A callback whose probe batch is the first ``probe_size`` examples of ``split``."""
        return cls(log_dir, probe_batch(dataset_dir, split, probe_size, spec), **kwargs)

    # ---- computing -------------------------------------------------------------------
    def compute(self) -> list[AttentionMatrix]:
        """The attention matrices of the current weights on the probe batch."""
        model = self.model
        for attr in ("attention_model", "spec", "config"):
            if not hasattr(model, attr):
                raise TypeError(
                    f"AttentionSummaries needs a FESeq model (with {attr!r}); "
                    f"got {type(model).__name__}."
                )
        if self._attention_model is None:
            self._attention_model = model.attention_model()
            names = model.spec.model_input_names()
            missing = [n for n in names if n not in self.probe]
            if missing:
                raise ValueError(f"The probe batch lacks model inputs {missing}.")
            self._inputs = {n: self.probe[n] for n in names}
        outputs = self._attention_model(self._inputs, training=False)
        outputs = {k: v for k, v in outputs.items() if k != "probability"}
        return attention_matrices(
            outputs, self.probe[HIST_LEN], model.spec, model.config, self.pooling_samples
        )

    def write(self, step: int) -> None:
        """Computes the matrices and writes them at ``step``."""
        import tensorflow as tf

        from feseq_tf.tensorboard_plugin.summary import matrix_summary

        matrices = self.compute()
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for m in matrices:
                matrix_summary(m.tag, m.values, step, m.info)
        self._writer.flush()
        self.written_steps.append(int(step))

    # ---- Keras hooks -------------------------------------------------------------------
    def _optimizer_steps(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.write_at_start and epoch == 0 and not self.written_steps:
            self.write(self._optimizer_steps() if self.unit == "step" else 0)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.unit == "epoch" and (epoch + 1) % self.every == 0:
            self.write(epoch + 1)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.unit == "step":
            step = self._optimizer_steps()
            if step % self.every == 0:
                self.write(step)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._attention_model = None
