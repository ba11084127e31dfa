"""The Keras callback that writes FESeq's attention heatmaps for TensorBoard (paper section 4.5).

:class:`AttentionSummaries` runs the model on a fixed probe batch of validation data
every ``every`` epochs (or training steps) and writes the labelled matrices of
:func:`feseq_tf.explain.attention_matrices` (the tags are listed in
:mod:`feseq_tf.explain`) for the project's TensorBoard plugin
(``feseq_tf.tensorboard_plugin``).

Example:
>>> cb = AttentionSummaries.from_dataset(dataset_dir, "runs/feseq/logs/attention")
>>> model.fit(train_ds, epochs=5, callbacks=[cb])
>>> # tensorboard --logdir runs/feseq/logs   -> tab "FESeq attention"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from feseq_tf.dataset import PreparedDataset
from feseq_tf.explain import AttentionMatrix, attention_matrices, probe_batch
from feseq_tf.schema import HIST_LEN, DatasetSpec

UNITS = ("epoch", "step")
SUMMARY_SUBDIR = "attention"
"""Default run name of the summaries, under the training run's ``logs/`` directory."""


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
        dataset_dir: str | PreparedDataset,
        log_dir: str,
        *,
        split: str = "valid",
        probe_size: int = 512,
        spec: DatasetSpec | None = None,
        **kwargs: Any,
    ) -> AttentionSummaries:
        """A callback whose probe batch is the first ``probe_size`` examples of ``split``.

        Args:
            dataset_dir: str or PreparedDataset. A prepared dataset, or its directory.
            log_dir: str. Where the summaries are written.
            split: str. The split the probe batch comes from. Defaults to ``"valid"``.
            probe_size: int. Examples in the probe batch. Defaults to 512.
            spec: DatasetSpec or None. The model's spec. Defaults to the dataset's.
            **kwargs: the other arguments of the constructor.

        Returns:
            The callback.
        """
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
