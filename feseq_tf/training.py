"""Training and evaluation shared by the CLIs (`feseq_tf.train`, `feseq_tf.evaluate`).

Early stopping uses the *exact* validation AUC (computed over the whole validation
split each epoch), keeps the best weights on disk, and survives a kill together with
Keras' ``BackupAndRestore``.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from feseq_tf import metrics as metrics_lib
from feseq_tf.config import ExperimentConfig, TrainConfig
from feseq_tf.data import make_dataset, read_columns
from feseq_tf.schema import GROUP_KEY, ORACLE_KEY, DatasetSpec

BEST_WEIGHTS = "best.weights.h5"
STATE_FILE = "train_state.json"


# ---- device-dependent defaults ------------------------------------------------------------
def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bfloat16 dot products (avx512_bf16 / amx_bf16)."""
    if platform.system() != "Linux":
        return False
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# Measured by benchmarks/train_throughput.py on a 2-core AVX-512 CPU: XLA did not make
# CPU training faster, so CPU runs default to no XLA (see README "Speed").
CPU_JIT_DEFAULT = False


def resolve_jit(setting: str) -> bool:
    if setting == "on":
        return True
    if setting == "off":
        return False
    return True if has_gpu() else CPU_JIT_DEFAULT


def resolve_precision(setting: str) -> str:
    """The Keras dtype policy for a ``TrainConfig.mixed_precision`` value."""
    if setting == "off":
        return "float32"
    if setting == "bfloat16":
        return "mixed_bfloat16"
    if setting == "float16":
        return "mixed_float16"
    if has_gpu():
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


def set_seed(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


# ---- prediction and metrics ---------------------------------------------------------------
def predict_split(
    model: keras.Model, dataset_dir: str, split: str, batch_size: int, spec: DatasetSpec | None = None
) -> np.ndarray:
    # A model built without feedback does not take the dataset's feedback columns.
    spec = (spec or DatasetSpec.load(dataset_dir)).model_view(getattr(model, "spec", None))
    ds = make_dataset(dataset_dir, split, batch_size, spec=spec).map(lambda x, y: x)
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float64).reshape(-1)


def evaluate_split(
    model: keras.Model, dataset_dir: str, split: str, batch_size: int, spec: DatasetSpec | None = None
) -> dict[str, float]:
    """Exact AUC, gAUC and logloss (plus oracle AUC and captured lift when known)."""
    spec = spec or DatasetSpec.load(dataset_dir)
    probs = predict_split(model, dataset_dir, split, batch_size, spec)
    cols = read_columns(dataset_dir, split, spec=spec)
    return metrics_lib.evaluate_predictions(
        cols[spec.label],
        probs,
        groups=cols[GROUP_KEY],
        oracle=cols.get(ORACLE_KEY) if spec.has_oracle else None,
    )


class ExactValidation(keras.callbacks.Callback):
    """Exact validation AUC/gAUC/logloss each epoch, best weights kept, early stopping.

    Writes ``val_auc``, ``val_gauc`` and ``val_logloss`` into the epoch logs (so later
    callbacks such as TensorBoard see them), saves the best weights to
    ``<output_dir>/best.weights.h5`` and its state to ``train_state.json``; on resume
    after a kill it reloads that state. Stops after ``patience`` epochs without
    improvement.
    """

    def __init__(self, dataset_dir: str, output_dir: str, batch_size: int, patience: int,
                 resume: bool = False, spec: DatasetSpec | None = None):
        super().__init__()
        self.dataset_dir = dataset_dir
        self.output_dir = output_dir
        self.batch_size = batch_size
        self.patience = patience
        self.resume = resume
        self.spec = spec or DatasetSpec.load(dataset_dir)
        self._cols = read_columns(dataset_dir, "valid", spec=self.spec)
        self.best_auc = -np.inf
        self.best_epoch = -1
        self.wait = 0
        self.history: list[dict[str, float]] = []
        self.stopped_early = False

    @property
    def state_path(self) -> str:
        return os.path.join(self.output_dir, STATE_FILE)

    @property
    def weights_path(self) -> str:
        return os.path.join(self.output_dir, BEST_WEIGHTS)

    def on_train_begin(self, logs=None):
        if self.resume and os.path.exists(self.state_path):
            with open(self.state_path) as fh:
                state = json.load(fh)
            self.best_auc = state["best_auc"]
            self.best_epoch = state["best_epoch"]
            self.wait = state["wait"]
            self.history = state["history"]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        start = time.time()
        probs = predict_split(self.model, self.dataset_dir, "valid", self.batch_size, self.spec)
        m = metrics_lib.evaluate_predictions(
            self._cols[self.spec.label], probs, groups=self._cols[GROUP_KEY]
        )
        logs["val_auc"] = m["auc"]
        logs["val_gauc"] = m["gauc"]
        logs["val_logloss"] = m["logloss"]
        improved = m["auc"] > self.best_auc
        if improved:
            self.best_auc, self.best_epoch, self.wait = m["auc"], epoch, 0
            self.model.save_weights(self.weights_path)
        else:
            self.wait += 1
        self.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        print(
            f"epoch {epoch + 1}: val_auc={m['auc']:.5f} val_gauc={m['gauc']:.5f} "
            f"val_logloss={m['logloss']:.5f} ({time.time() - start:.1f}s)"
            + (" *best*" if improved else f" (best {self.best_auc:.5f} at epoch {self.best_epoch + 1})"),
            flush=True,
        )
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(
                {"best_auc": self.best_auc, "best_epoch": self.best_epoch, "wait": self.wait,
                 "history": self.history},
                fh,
            )
        os.replace(tmp, self.state_path)
        if self.wait >= self.patience:
            print(f"early stopping: no improvement for {self.wait} epochs", flush=True)
            self.stopped_early = True
            self.model.stop_training = True


def compile_model(model: keras.Model, train: TrainConfig, jit: bool) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=train.learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        jit_compile=jit,
    )


def fit(
    model: keras.Model,
    dataset_dir: str,
    output_dir: str,
    config: ExperimentConfig,
    *,
    jit: bool,
    verbose: Any = None,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
) -> dict[str, Any]:
    """Train with early stopping on exact validation AUC; restore the best weights.

    Returns a dict with the per-epoch history, the best epoch and the training
    throughput (samples/s over the epochs run in this process).
    """
    train = config.train
    spec = model.spec if hasattr(model, "spec") else DatasetSpec.load(dataset_dir)
    os.makedirs(output_dir, exist_ok=True)
    backup_dir = os.path.join(output_dir, "backup")
    resume = os.path.isdir(backup_dir)
    if resume:
        print(f"resuming from {backup_dir}", flush=True)
    compile_model(model, train, jit)

    train_ds = make_dataset(
        dataset_dir, "train", train.batch_size, training=True, spec=spec,
        seed=train.seed, shuffle_buffer=train.shuffle_buffer,
    )
    validation = ExactValidation(dataset_dir, output_dir, train.eval_batch_size, train.patience,
                                 resume=resume, spec=spec)
    timer = _Throughput()
    callbacks = [
        keras.callbacks.BackupAndRestore(backup_dir),
        timer,
        validation,
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), write_graph=False),
    ] + list(extra_callbacks or [])
    if verbose is None:  # a progress bar on a terminal, one line per epoch in logs
        verbose = 1 if sys.stdout.isatty() else 2
    # The input is shuffled by make_dataset (keyed by the seed); shuffle=False keeps
    # Keras from warning that it cannot shuffle a tf.data.Dataset itself.
    model.fit(train_ds, epochs=train.epochs, callbacks=callbacks, verbose=verbose, shuffle=False)
    if os.path.exists(validation.weights_path):
        model.load_weights(validation.weights_path)
    return {
        "history": validation.history,
        "best_epoch": validation.best_epoch + 1,
        "best_val_auc": float(validation.best_auc),
        "stopped_early": bool(validation.stopped_early),
        "train_samples_per_s": timer.samples_per_second(train.batch_size),
        "jit_compile_effective": bool(getattr(model, "jit_compile", False)),
    }


class _Throughput(keras.callbacks.Callback):
    """Training steps per second, excluding the first (compiling) step."""

    def __init__(self):
        super().__init__()
        self.steps = 0
        self.seconds = 0.0
        self._t = None
        self._first = True

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._first:
            self._first = False
            return
        self.steps += 1
        self.seconds += time.perf_counter() - self._t

    def samples_per_second(self, batch_size: int) -> float:
        return float(self.steps * batch_size / self.seconds) if self.seconds else float("nan")
