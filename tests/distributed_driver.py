"""One training process for the distributed-training tests (``python -m tests.distributed_driver``).

Trains a tiny dropout-free FESeq with :func:`feseq_tf.train.run` under whatever
``TF_CONFIG`` / ``--strategy`` says, and records weights for the tests to compare:
``<record>/<tag>-begin.npz`` (before the first step), ``<tag>-step<N>.npz`` (after
global step N of the first epoch run), ``<tag>-epoch<K>.npz`` (after epoch K) and
``<tag>-end.npz`` (after the last epoch). It can
SIGKILL itself in the middle of an epoch to test resumption.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY = (
    "model.mlp_units=[16]", "model.pooling_hidden=16", "model.embedding_dim=4",
    "model.transformer_heads=2", "model.dropout=0.0", "train.patience=5",
    "train.mixed_precision=off", "train.jit_compile=off",
)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--strategy", default="auto")
    p.add_argument("--logical-cpus", type=int, default=0)
    p.add_argument("--step", type=int, default=3, help="record the weights after this step")
    p.add_argument("--kill-at", default="", metavar="EPOCH:BATCH",
                   help="SIGKILL this process after that batch (0-based) of that epoch")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a further config override (as train's --set)")
    p.add_argument("--no-patch", action="store_true",
                   help="do not apply the Keras multi-worker workarounds (expect failure)")
    args = p.parse_args(argv)

    import tensorflow as tf

    if args.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(args.logical_cpus)])
    if args.no_patch:
        from feseq_tf import keras_compat

        keras_compat._applied = True  # pretend: Keras runs unpatched

    import keras
    import numpy as np

    from feseq_tf import train

    kill = tuple(int(v) for v in args.kill_at.split(":")) if args.kill_at else None

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.first_epoch = None

        def _save(self, name):
            np.savez(os.path.join(args.record, f"{args.tag}-{name}.npz"),
                     *[np.asarray(w) for w in self.model.get_weights()])

        def on_train_begin(self, logs=None):
            self._save("begin")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            if self.first_epoch is None:
                self.first_epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == self.first_epoch and batch + 1 == args.step:
                self._save(f"step{args.step}")
            if kill and (self.epoch, batch) == kill:
                os.kill(os.getpid(), signal.SIGKILL)

        def on_epoch_end(self, epoch, logs=None):
            self._save(f"epoch{epoch + 1}")

        def on_train_end(self, logs=None):
            self._save("end")

    overrides = list(TINY) + [
        f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}",
        f"train.seed={args.seed}", f"train.strategy={args.strategy}", *args.set,
    ]
    config = train.resolve_config("synthetic", preset_name="synthetic",
                                  overrides=train.parse_overrides(overrides))
    metrics = train.run(config, args.data, args.out, attention_summaries=False, export=False,
                        deterministic=True, callbacks=[Recorder()], verbose=0)
    with open(os.path.join(args.record, f"{args.tag}-metrics.json"), "w") as fh:
        json.dump(metrics, fh)


if __name__ == "__main__":
    main(sys.argv[1:])
