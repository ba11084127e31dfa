"""Training and evaluation throughput of FESeq at the paper's Ele.me configuration.

    python -m benchmarks.train_throughput [--batch-size 4096] [--steps 6] [--variants ...]

Builds the Ele.me preset (23 fields, L = 10, d = 16, 8-head refiner at width 400,
pooling hidden 128, MLP 1024-512-256) over a dataset spec of Ele.me's shape and feeds
it random batches of that shape from memory, so the figures measure the model, not
the reader (benchmarks/pipeline.py measures the reader). Each variant (precision x
XLA) runs in its own process. Prints samples/s for training (``model.fit`` steps) and
evaluation (``model.predict``), the share of the CPU's GEMM peak, and the ratio to the
authors' PyTorch implementation measured on the same machine class (about 660
training and 2,300 evaluation samples/s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# FLOPs of one sample at the Ele.me preset (forward ~28 MFLOP; training ~3x).
TRAIN_FLOP = 84e6
EVAL_FLOP = 28e6
# GEMM peaks of the reference 2-core AVX-512 CPU (GFLOP/s).
PEAK_GFLOPS = {"float32": 170.0, "mixed_bfloat16": 390.0, "mixed_float16": 170.0}
AUTHORS = {"train": 660.0, "eval": 2300.0}

# Vocabulary sizes of the Ele.me fields after the paper's filtering with min count 10
# (orders of magnitude; the embedding tables' size affects the optimizer's cost).
ELEME_VOCAB = {
    "user_id": 20000, "gender": 4, "visit_city": 300, "is_super_vip": 4, "geohash12": 30000,
    "shop_id": 20000, "item_id": 50000, "city_id": 300, "district_id": 1500,
    "shop_aoi_id": 8000, "shop_geohash_6": 3000, "shop_geohash_12": 15000,
    "category_1_id": 40, "rank_7": 100, "rank_30": 100, "rank_90": 100,
    "hours": 26, "time_type": 6, "weekdays": 9,
}


def eleme_shaped_spec():
    from feseq_tf.schema import DatasetSpec, FieldSpec
    from pipelines import eleme

    fields = []
    for name, role, typ, sequential in eleme.FIELD_LAYOUT:
        fields.append(FieldSpec(name, role, typ, sequential=sequential,
                                vocab_size=ELEME_VOCAB.get(name, 0) if typ == "categorical" else 0))
    return DatasetSpec(name="eleme_shape", fields=tuple(fields), max_len=10)


def random_batch(spec, batch_size: int, seed: int = 0):
    import numpy as np

    from feseq_tf.testing import random_features

    y = (np.random.default_rng(seed + 1).random(batch_size) < 0.04).astype("float32")
    return random_features(spec, batch_size, seed), y


def run_variant(precision: str, jit: bool, batch_size: int, steps: int, eval_batches: int,
                optimizer: str = "deduplicated_adam") -> dict:
    import keras
    import tensorflow as tf

    from feseq_tf.config import preset
    from feseq_tf.models.feseq import FESeq
    from feseq_tf.training import compile_model

    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(precision)
    cfg = preset("eleme")
    spec = eleme_shaped_spec()
    model = FESeq(spec, cfg.model)
    compile_model(model, cfg.train, jit)
    if optimizer == "keras_adam":  # Keras' own Adam, for the cost of deduplicating rows
        model.compile(optimizer=keras.optimizers.Adam(cfg.train.learning_rate),
                      loss="binary_crossentropy", jit_compile=jit)
    elif optimizer != "deduplicated_adam":
        raise SystemExit(f"unknown optimizer {optimizer!r}: deduplicated_adam or keras_adam")
    x, y = random_batch(spec, batch_size)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # compile + warm up
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    train_s = time.perf_counter() - start

    xs = tf.data.Dataset.from_tensors(x).repeat(eval_batches)
    model.predict(tf.data.Dataset.from_tensors(x), verbose=0)  # compile
    start = time.perf_counter()
    model.predict(xs, verbose=0)
    eval_s = time.perf_counter() - start
    return {
        "precision": precision,
        "jit": jit,
        "jit_effective": bool(model.jit_compile),
        "optimizer": optimizer,
        "train_samples_per_s": steps * batch_size / train_s,
        "eval_samples_per_s": eval_batches * batch_size / eval_s,
        "parameters": int(model.count_params()),
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--steps", type=int, default=6, help="timed training steps per variant")
    p.add_argument("--eval-batches", type=int, default=6)
    p.add_argument("--variants", nargs="+",
                   default=["float32:off", "float32:on", "mixed_bfloat16:off", "mixed_bfloat16:on"],
                   help="PRECISION:XLA[:OPTIMIZER] (optimizer deduplicated_adam, the default, "
                        "or keras_adam), e.g. mixed_bfloat16:off float32:off:keras_adam")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._child:
        precision, jit, *optimizer = args._child.split(":")
        res = run_variant(precision, jit == "on", args.batch_size, args.steps, args.eval_batches,
                          *optimizer)
        print("RESULT " + json.dumps(res), flush=True)
        return [res]

    results = []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for v in args.variants:
        print(f"running {v} ...", flush=True)
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.train_throughput", "--_child", v,
             "--batch-size", str(args.batch_size), "--steps", str(args.steps),
             "--eval-batches", str(args.eval_batches)],
            capture_output=True, text=True, env=env,
        )
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            print(out.stdout[-3000:], out.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"variant {v} failed")
        results.append(json.loads(lines[-1][7:]))

    print()
    print(f"FESeq, Ele.me preset, batch {args.batch_size}, {os.cpu_count()} CPU cores")
    print(f"{'precision':16s} {'XLA':4s} {'optimizer':18s} {'train/s':>9s} {'x authors':>9s} {'%peak':>6s} "
          f"{'eval/s':>9s} {'x authors':>9s} {'%peak':>6s}")
    for r in results:
        peak = PEAK_GFLOPS.get(r["precision"], 170.0) * 1e9
        xla = ("on" if r["jit_effective"] else "OFF!") if r["jit"] else "off"
        print(f"{r['precision']:16s} {xla:4s} {r['optimizer']:18s} {r['train_samples_per_s']:9.0f} "
              f"{r['train_samples_per_s'] / AUTHORS['train']:9.2f} "
              f"{100 * r['train_samples_per_s'] * TRAIN_FLOP / peak:6.1f} "
              f"{r['eval_samples_per_s']:9.0f} {r['eval_samples_per_s'] / AUTHORS['eval']:9.2f} "
              f"{100 * r['eval_samples_per_s'] * EVAL_FLOP / peak:6.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
