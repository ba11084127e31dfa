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
import weakref
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from feseq_tf import metrics as metrics_lib
from feseq_tf.config import LINEAR_MODEL, ExperimentConfig, TrainConfig
from feseq_tf.data import (
    count_examples,
    epoch_seed,
    make_dataset,
    make_training_stream,
    read_columns,
    steps_per_epoch,
)
from feseq_tf.dataset import PreparedDataset, as_prepared
from feseq_tf.optimizers import DeduplicatedAdam
from feseq_tf.redraw import RedrawEmbeddings
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


# TensorFlow reduces its global seed modulo 2**31 - 1; a global seed of 0 there makes its
# ``get_seed`` compare an op's seed with 0, which fails for the tensor seeds of the
# training stream's per-epoch shuffles (``OperatorNotAllowedInGraphError``).
_TF_SEED_MODULUS = 2**31 - 1
TF_GLOBAL_SEED_FOR_ZERO = 20_240_101


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy, Keras and TensorFlow from the run's seed.

    A seed that TensorFlow would reduce to 0 (``0``, or a multiple of 2**31 - 1) gives TensorFlow's global
    seed :data:`TF_GLOBAL_SEED_FOR_ZERO` instead (Python, NumPy and Keras keep 0), so
    that ``--seed 0`` trains like any other seed.
    """
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if seed % _TF_SEED_MODULUS == 0:
        tf.random.set_seed(TF_GLOBAL_SEED_FOR_ZERO)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


# ---- prediction and metrics ---------------------------------------------------------------
def predict_split(
    model: keras.Model,
    dataset_dir: str | PreparedDataset,
    split: str,
    batch_size: int,
    spec: DatasetSpec | None = None,
) -> np.ndarray:
    """The model's click probabilities over a whole split, in :func:`read_columns` order.

    Args:
        model: keras.Model. The model.
        dataset_dir: str or PreparedDataset. A prepared dataset, or its directory.
        split: str. ``"train"``, ``"valid"`` or ``"test"``.
        batch_size: int. Prediction batch size.
        spec: DatasetSpec or None. Defaults to the dataset's.

    Returns:
        float64 probabilities ``[examples]``.
    """
    dataset = as_prepared(dataset_dir)
    # A model built without feedback does not take the dataset's feedback columns.
    spec = (spec or dataset.spec).model_view(getattr(model, "spec", None))
    ds = make_dataset(dataset, split, batch_size, spec=spec).map(lambda x, y: x)
    strategy = getattr(model, "_distribute_strategy", None)
    if not _multi_worker(model) and strategy is not None and strategy.num_replicas_in_sync > 1:
        return np.asarray(model.predict(ds, verbose=0), dtype=np.float64).reshape(-1)
    # One replica: a forward pass traced once per model for any batch size (model.predict
    # traces a batch shape first and again for the next one: a second XLA compile per run).
    # Under several workers model.predict would split the split among them; every worker
    # scores all of it here instead (no collective ops), so each sees the exact metric.
    if model not in _FORWARDS:
        signature = tf.nest.map_structure(
            lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype), ds.element_spec
        )
        @tf.autograph.experimental.do_not_convert
        def forward_pass(x):
            return model(x, training=False)

        _FORWARDS[model] = tf.function(
            forward_pass, input_signature=[signature],
            jit_compile=getattr(model, "jit_compile", False) is True,
        )
    forward = _FORWARDS[model]
    parts = [np.asarray(forward(x), dtype=np.float64).reshape(-1) for x in ds]
    return np.concatenate(parts) if parts else np.zeros((0,))


_FORWARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _multi_worker(model: keras.Model) -> bool:
    return is_multi_worker(getattr(model, "_distribute_strategy", None))


def is_multi_worker(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether ``strategy`` spans several worker processes."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        strategy.extended._in_multi_worker_mode()
    )


def evaluate_split(
    model: keras.Model,
    dataset_dir: str | PreparedDataset,
    split: str,
    batch_size: int,
    spec: DatasetSpec | None = None,
) -> dict[str, float]:
    """Exact AUC, gAUC and logloss (plus oracle AUC and captured lift when known).

    Args:
        model: keras.Model. The model.
        dataset_dir: str or PreparedDataset. A prepared dataset, or its directory.
        split: str. ``"train"``, ``"valid"`` or ``"test"``.
        batch_size: int. Prediction batch size.
        spec: DatasetSpec or None. Defaults to the dataset's.

    Returns:
        The metrics of :func:`feseq_tf.metrics.evaluate_predictions` over the whole split.
    """
    dataset = as_prepared(dataset_dir)
    spec = spec or dataset.spec
    probs = predict_split(model, dataset, split, batch_size, spec)
    cols = read_columns(dataset, split, spec=spec)
    return metrics_lib.evaluate_predictions(
        cols[spec.label],
        probs,
        groups=cols[GROUP_KEY],
        oracle=cols.get(ORACLE_KEY) if spec.has_oracle else None,
    )


def redraws_embeddings(train: TrainConfig, model_name: str) -> bool:
    """Whether the run re-draws its embeddings: ``redraw_embeddings``, except for the
    logistic regression (nothing but per-id weights to carry across epochs)."""
    return train.redraw_embeddings and model_name != LINEAR_MODEL


def selection_warmup(train: TrainConfig, model_name: str) -> int:
    """Epochs that early stopping never picks: 1 with re-drawn embeddings, else 0.

    With ``redraw_embeddings`` the first epoch's model is the one training without
    re-drawing gives (layers and embeddings after one pass); the re-draw's augmentation
    of the layers above the embeddings starts with the second. On MovieLens 100K split
    by time a validation AUC that hardly moves between epochs picked the first epoch on
    2 of FESeq's 5 seeds, its two lowest test AUCs; on the synthetic regimes no re-drawn
    FESeq run peaked there (README, "Re-drawing the embeddings every epoch"). A run of
    one epoch, and the logistic regression (never re-drawn), keep every epoch a candidate.
    """
    return 1 if redraws_embeddings(train, model_name) and train.epochs > 1 else 0


class ExactValidation(keras.callbacks.Callback):
    """Exact validation AUC/gAUC/logloss each epoch, best weights kept, early stopping.

    Writes ``val_auc``, ``val_gauc`` and ``val_logloss`` into the epoch logs (so later
    callbacks such as TensorBoard see them), saves the best weights to
    ``<output_dir>/best.weights.h5`` and its state to ``train_state.json``; a run resumed
    at epoch ``start_epoch`` reloads that state (the epochs before it). Stops after
    ``patience`` epochs without improvement. The first ``warmup_epochs`` epochs are
    scored and logged but never chosen as the best nor counted towards the patience
    (:func:`selection_warmup`: one epoch when the embeddings are re-drawn).

    With ``write=False`` (a worker that is not the chief) it writes nothing: it keeps its
    best weights in memory and reads the chief's state from ``output_dir`` on resume. Under
    several workers every worker scores the whole validation split and the workers agree
    on the mean of their AUCs (equal up to float noise), so they stop at the same epoch.
    """

    def __init__(self, dataset_dir: str | PreparedDataset, output_dir: str, batch_size: int,
                 patience: int,
                 resume: bool = False, spec: DatasetSpec | None = None, *,
                 start_epoch: int = 0, write: bool = True, warmup_epochs: int = 0):
        super().__init__()
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be an integer >= 0, got {warmup_epochs!r}.")
        self.warmup_epochs = warmup_epochs
        self.dataset = as_prepared(dataset_dir)
        self.dataset_dir = self.dataset.directory
        self.output_dir = output_dir
        self.batch_size = batch_size
        self.patience = patience
        self.resume = resume
        self.start_epoch = start_epoch
        self.write = write
        self.spec = spec or self.dataset.spec
        self._cols = read_columns(self.dataset, "valid", spec=self.spec)
        self.best_auc = -np.inf
        self.best_epoch = -1
        self.wait = 0
        self.history: list[dict[str, float]] = []
        self.stopped_early = False
        self._best_in_memory: list[np.ndarray] | None = None

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
            # Epochs after the backup (killed before it was written) are run again.
            self.history = [h for h in state["history"] if h["epoch"] <= self.start_epoch]
            for h in self.history:
                self._record(h["epoch"] - 1, h["val_auc"])

    def _record(self, epoch: int, auc: float) -> bool:
        if epoch < self.warmup_epochs:  # scored, never the best, no patience spent
            return False
        improved = auc > self.best_auc
        if improved:
            self.best_auc, self.best_epoch, self.wait = auc, epoch, 0
        else:
            self.wait += 1
        return improved

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        start = time.time()
        probs = predict_split(self.model, self.dataset, "valid", self.batch_size, self.spec)
        m = metrics_lib.evaluate_predictions(
            self._cols[self.spec.label], probs, groups=self._cols[GROUP_KEY]
        )
        if _multi_worker(self.model):
            m = _mean_across_workers(self.model._distribute_strategy, m)
        logs["val_auc"] = m["auc"]
        logs["val_gauc"] = m["gauc"]
        logs["val_logloss"] = m["logloss"]
        improved = self._record(epoch, m["auc"])
        if improved:
            if self.write:
                self.model.save_weights(self.weights_path)
            else:
                self._best_in_memory = self.model.get_weights()
        self.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        print(
            f"epoch {epoch + 1}: val_auc={m['auc']:.5f} val_gauc={m['gauc']:.5f} "
            f"val_logloss={m['logloss']:.5f} ({time.time() - start:.1f}s)"
            + (" *best*" if improved
               else " (warm-up: not a candidate for the best)" if epoch < self.warmup_epochs
               else f" (best {self.best_auc:.5f} at epoch {self.best_epoch + 1})"),
            flush=True,
        )
        if self.write:
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

    def restore_best(self) -> None:
        """Load the best epoch's weights into the model (if an epoch improved)."""
        if self._best_in_memory is not None:
            self.model.set_weights(self._best_in_memory)
        elif os.path.exists(self.weights_path):  # the chief's file, written before any resume
            self.model.load_weights(self.weights_path)


def _mean_across_workers(strategy: tf.distribute.Strategy, values: dict[str, float]) -> dict[str, float]:
    """The means of Python floats over all replicas of all workers (one collective op)."""
    keys = sorted(values)
    mean = _collective_mean(strategy)(tf.constant([values[k] for k in keys], tf.float64))
    return {k: float(v) for k, v in zip(keys, mean.numpy(), strict=True)}


_COLLECTIVE_MEANS: dict[int, Any] = {}


def _collective_mean(strategy: tf.distribute.Strategy) -> Any:
    """A compiled mean-over-replicas of a vector, one per strategy (also a barrier)."""
    key = id(strategy)
    if key not in _COLLECTIVE_MEANS:
        @tf.function
        def mean(vector):
            return strategy.reduce("MEAN", strategy.run(tf.identity, args=(vector,)), axis=None)

        _COLLECTIVE_MEANS[key] = mean
    return _COLLECTIVE_MEANS[key]


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Wait until every worker gets here (multi-worker only; a no-op otherwise)."""
    if is_multi_worker(strategy):
        _collective_mean(strategy)(tf.zeros([1], tf.float64))


class EpochSeeds(keras.callbacks.Callback):
    """Keys the state of every random generator of the model to (seed, epoch).

    Keras' dropout draws come from ``SeedGenerator`` states, which weight checkpoints do
    not hold; setting them at the start of each epoch from the run's seed and the epoch
    makes a run resumed at epoch ``k`` draw exactly what an uninterrupted run draws.
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        states = [v for v in self.model.variables if v.path.endswith("seed_generator_state")]
        for i, state in enumerate(states):
            key = epoch_seed(self.seed, epoch) * 7919 + i
            state.assign(np.array([key % (2**31 - 1), 0], dtype=state.dtype))


class _Backup(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore``; only the chief writes (and finally deletes) the backup.

    Every worker restores from the same shared directory, so a restarted cluster resumes
    at one epoch.
    """

    def __init__(self, backup_dir: str, *, write: bool):
        super().__init__(backup_dir)
        self.write = write

    def on_epoch_end(self, epoch, logs=None):
        if self.write:
            super().on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self.write:
            super().on_train_batch_end(batch, logs)

    def on_train_end(self, logs=None):
        if self.write:
            super().on_train_end(logs)


def backup_epoch(backup_dir: str) -> int:
    """Epochs a backup in ``backup_dir`` has completed (0 without one)."""
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.exists(path):
        return 0
    with open(path) as fh:
        return int(json.load(fh)["epoch"])


def compile_model(model: keras.Model, train: TrainConfig, jit: bool, *, replicas: int = 1) -> None:
    """Adam and binary cross-entropy; with ``train.scale_learning_rate`` the rate x replicas.

    Adam is :class:`feseq_tf.optimizers.DeduplicatedAdam`: Keras' Adam with the repeated
    rows of embedding gradients summed first, so an update does not depend on how often a
    row repeats in a batch or on how the batch is split over replicas.
    """
    rate = train.learning_rate * (replicas if train.scale_learning_rate else 1)
    model.compile(
        optimizer=DeduplicatedAdam(learning_rate=rate),
        loss=keras.losses.BinaryCrossentropy(),
        jit_compile=jit,
    )
    build_optimizer(model)


def build_optimizer(model: keras.Model) -> None:
    """Create the optimizer's slots now, not inside the first training step.

    A ``tf.function`` that creates variables while it is traced is traced a second time
    without them, so a lazily built optimizer doubles the cost of compiling the training
    step (about 10 s for the tiny test model on a 2-core CPU, more for the paper's).
    Call it in the strategy's scope, after ``model.compile``.
    """
    model.optimizer.build(model.trainable_variables)


def global_batch_size(train: TrainConfig, replicas: int) -> int:
    """Examples per step over all replicas (``batch_size`` is global or per replica)."""
    if train.batch_size_scope == "per_replica":
        return train.batch_size * replicas
    if train.batch_size % replicas:
        raise ValueError(
            f"batch_size {train.batch_size} (global) does not split evenly over {replicas} "
            "replicas; choose a multiple, or set train.batch_size_scope=per_replica."
        )
    return train.batch_size


def fit(
    model: keras.Model,
    dataset_dir: str | PreparedDataset,
    output_dir: str,
    config: ExperimentConfig,
    *,
    jit: bool,
    verbose: Any = None,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    shared_dir: str | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Train with early stopping on exact validation AUC; restore the best weights.

    The model must have been built in ``strategy``'s scope (the default strategy when
    None). Each epoch's data order and dropout draws are keyed to (seed, epoch), so a
    run killed and started again resumes from its last epoch backup and, with op
    determinism, ends exactly like an uninterrupted run.

    Args:
        dataset_dir: str or PreparedDataset. A prepared dataset (opened once by the
            caller, see :class:`feseq_tf.dataset.PreparedDataset`), or its directory.
        shared_dir: str or None. Where the backup, best weights and validation state
            live (the chief's output directory; shared by all workers). Defaults to
            ``output_dir``.
        write: bool. Whether this process writes them (the chief).

    Returns a dict with the per-epoch history, the best epoch and the training
    throughput (samples/s over the epochs run in this process).
    """
    train = config.train
    strategy = strategy or tf.distribute.get_strategy()
    shared_dir = shared_dir or output_dir
    dataset = as_prepared(dataset_dir)
    spec = model.spec if hasattr(model, "spec") else dataset.spec
    os.makedirs(output_dir, exist_ok=True)
    backup_dir = os.path.join(shared_dir, "backup")
    start_epoch = backup_epoch(backup_dir)
    resume = os.path.isdir(backup_dir)
    if resume:
        print(f"resuming from {backup_dir} after epoch {start_epoch}", flush=True)
    replicas = strategy.num_replicas_in_sync
    batch = global_batch_size(train, replicas)
    with strategy.scope():
        compile_model(model, train, jit, replicas=replicas)

    steps = steps_per_epoch(count_examples(dataset, "train"), batch)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
            return make_training_stream(
                dataset, context.get_per_replica_batch_size(batch), spec=spec,
                seed=train.seed, start_epoch=start_epoch, shuffle_buffer=train.shuffle_buffer,
                shard_index=context.input_pipeline_id, shard_count=context.num_input_pipelines,
            )

        train_ds = strategy.distribute_datasets_from_function(per_worker)
    else:
        train_ds = make_training_stream(
            dataset, batch, spec=spec, seed=train.seed, start_epoch=start_epoch,
            shuffle_buffer=train.shuffle_buffer,
        )
    validation = ExactValidation(dataset, shared_dir, train.eval_batch_size, train.patience,
                                 resume=resume, spec=spec, start_epoch=start_epoch, write=write,
                                 warmup_epochs=selection_warmup(train, config.model_name))
    timer = _Throughput()
    # Validation state is written before the backup: a kill between the two re-runs the
    # epoch, and the resumed validation drops what it had recorded for it.
    callbacks = [EpochSeeds(train.seed), timer, validation, _Backup(backup_dir, write=write)]
    if redraws_embeddings(train, config.model_name):
        callbacks.insert(1, RedrawEmbeddings(train.seed, verbose=write))
    elif train.redraw_embeddings:
        print("note: redraw_embeddings ignored for lr (it has nothing but its "
              "per-id weights to carry across epochs)", flush=True)
    if write:
        callbacks.append(
            keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), write_graph=False))
    callbacks += list(extra_callbacks or [])
    if verbose is None:  # a progress bar on a terminal, one line per epoch in logs
        verbose = 1 if sys.stdout.isatty() else 2
    # The input is shuffled by make_training_stream (keyed by seed and epoch);
    # shuffle=False keeps Keras from warning that it cannot shuffle a tf.data.Dataset.
    model.fit(train_ds, epochs=train.epochs, steps_per_epoch=steps, callbacks=callbacks,
              verbose=verbose, shuffle=False)
    validation.restore_best()
    return {
        "history": validation.history,
        "best_epoch": validation.best_epoch + 1,
        "best_val_auc": float(validation.best_auc),
        "stopped_early": bool(validation.stopped_early),
        "train_samples_per_s": timer.samples_per_second(batch),
        "jit_compile_effective": bool(getattr(model, "jit_compile", False)),
        "replicas": replicas,
        "global_batch_size": batch,
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
