"""Training and evaluation throughput of FESeq at the paper's Ele.me configuration.

    python -m benchmarks.train_throughput [--batch-size 4096] [--steps 6] [--variants ...]

Builds the Ele.me preset (23 fields, L = 10, d = 16, 8-head refiner at width 400,
pooling hidden 128, MLP 1024-512-256) over a dataset spec of Ele.me's shape and feeds
it random batches of that shape from memory, so the figures measure the model, not
the reader (benchmarks/pipeline.py measures the reader). Each variant (precision x
XLA) runs in its own process. Prints samples/s for training (``model.fit`` steps) and
evaluation (``model.predict``), the share of the machine's GEMM peak, and the ratio to
the authors' PyTorch implementation measured on the same machine class (about 660
training and 2,300 evaluation samples/s). The share counts the FLOPs of every matrix
product in the model's graph at the batch's shapes (a training step as three forward
passes) over the rate of a large matrix product in the variant's compute dtype measured
in the same process; a share above 100 % is refused as the bug it would be.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from feseq_tf import cli

# A training step costs about three forward passes (forward, and the gradients with
# respect to the activations and to the weights).
TRAIN_PASSES = 3
# The compute dtype of each precision, for the GEMM peak.
COMPUTE_DTYPE = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
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


def _matmul_flops(op) -> int:
    """Multiply-add FLOPs (2 per multiply-add) of one MatMul / BatchMatMul / Einsum op,
    from its static input shapes; 0 for any other op."""
    import numpy as np

    if op.type in ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a, b = (tuple(t.shape) for t in op.inputs[:2])
        adj_a = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
        adj_b = op.get_attr("transpose_b" if op.type == "MatMul" else "adj_y")
        m, k = (a[-1], a[-2]) if adj_a else (a[-2], a[-1])
        n = b[-2] if adj_b else b[-1]
        batch = np.broadcast_shapes(a[:-2], b[:-2])
        return 2 * int(np.prod(batch, dtype=np.int64)) * m * n * k
    if op.type == "Einsum":
        equation = op.get_attr("equation").decode()
        operands, _ = equation.split("->")
        sizes: dict[str, int] = {}
        for letters, t in zip(operands.split(","), op.inputs, strict=True):
            sizes.update(zip(letters, tuple(t.shape), strict=True))
        return 2 * int(np.prod(list(sizes.values()), dtype=np.int64))
    return 0


def forward_flops(model, x) -> float:
    """FLOPs of one sample's forward pass, counted from the model's graph: every matrix
    product (dense layers, attention scores and sums) at the batch's static shapes.
    Element-wise work, lookups and the softmax are left out (a small share)."""
    import tensorflow as tf

    batch = len(next(iter(x.values())))
    fn = tf.function(lambda inputs: model(inputs, training=False), autograph=False)
    graph = fn.get_concrete_function(
        {k: tf.TensorSpec(v.shape, tf.as_dtype(v.dtype)) for k, v in x.items()}
    ).graph
    total = sum(_matmul_flops(op) for op in graph.get_operations())
    return total / batch


def gemm_peak(dtype: str, n: int = 4096, repeats: int = 5) -> float:
    """The machine's GEMM rate in FLOP/s: an ``n`` x ``n`` matrix product in ``dtype``,
    best of ``repeats`` timed runs, on every core TensorFlow uses."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=tf.float32, seed=1)
    b = tf.random.normal((n, n), dtype=tf.float32, seed=2)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    matmul = tf.function(lambda u, v: tf.reduce_sum(tf.cast(tf.matmul(u, v)[:1, :1], tf.float32)))
    matmul(a, b).numpy()  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def run_variant(precision: str, jit: bool, batch_size: int, steps: int, eval_batches: int,
                optimizer: str = "deduplicated_adam", overrides: tuple[str, ...] = ()) -> dict:
    import keras
    import tensorflow as tf

    from feseq_tf.config import preset
    from feseq_tf.models.feseq import FESeq
    from feseq_tf.training import build_optimizer, compile_model

    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(precision)
    cfg = preset("eleme")
    if overrides:  # e.g. the GPU check's CPU dry run: a tiny model, as the tests train
        from feseq_tf.train import parse_overrides

        cfg = cfg.override(parse_overrides(list(overrides)))
    spec = eleme_shaped_spec()
    model = FESeq(spec, cfg.model)
    compile_model(model, cfg.train, jit)
    if optimizer == "keras_adam":  # Keras' own Adam, for the cost of deduplicating rows
        model.compile(optimizer=keras.optimizers.Adam(cfg.train.learning_rate),
                      loss="binary_crossentropy", jit_compile=jit)
        build_optimizer(model)
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
    flops = forward_flops(model, x)
    peak = gemm_peak(COMPUTE_DTYPE[precision])
    return {
        "forward_flop_per_sample": flops,
        "gemm_peak_flops": peak,
        "precision": precision,
        "jit": jit,
        "jit_effective": bool(model.jit_compile),
        "optimizer": optimizer,
        "train_samples_per_s": steps * batch_size / train_s,
        "eval_samples_per_s": eval_batches * batch_size / eval_s,
        "parameters": int(model.count_params()),
    }


def peak_shares(result: dict) -> tuple[float, float]:
    """The shares of the GEMM peak that training and evaluation reach (FLOPs counted from
    the model's graph over the peak measured in the same process).

    Raises:
        SystemExit: a share above 100 %: the FLOP count or the peak is wrong, and the
            benchmark says so instead of printing it.
    """
    peak = result["gemm_peak_flops"]
    flops = result["forward_flop_per_sample"]
    train = result["train_samples_per_s"] * TRAIN_PASSES * flops / peak
    evaluation = result["eval_samples_per_s"] * flops / peak
    for what, share in (("training", train), ("evaluation", evaluation)):
        if share > 1.0:
            raise SystemExit(
                f"error: {result['precision']} {what} reaches {100 * share:.0f} % of the "
                f"measured GEMM peak ({peak / 1e9:.0f} GFLOP/s): the FLOP count or the peak is "
                "wrong; not printing it."
            )
    return train, evaluation


@cli.command
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
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override the Ele.me preset (as train's --set); the figures are then "
                        "not the paper configuration's")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._child:
        precision, jit, *optimizer = args._child.split(":")
        res = run_variant(precision, jit == "on", args.batch_size, args.steps, args.eval_batches,
                          *optimizer, overrides=tuple(args.set))
        print("RESULT " + json.dumps(res), flush=True)
        return [res]

    results = []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for v in args.variants:
        print(f"running {v} ...", flush=True)
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.train_throughput", "--_child", v,
             "--batch-size", str(args.batch_size), "--steps", str(args.steps),
             "--eval-batches", str(args.eval_batches),
             *[a for item in args.set for a in ("--set", item)]],
            capture_output=True, text=True, env=env,
        )
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            print(out.stdout[-3000:], out.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"variant {v} failed")
        results.append(json.loads(lines[-1][7:]))

    for r in results:
        r["train_peak_share"], r["eval_peak_share"] = peak_shares(r)
    print()
    preset_name = "Ele.me preset" + (f" with {', '.join(args.set)}" if args.set else "")
    print(f"FESeq, {preset_name}, batch {args.batch_size}, {os.cpu_count()} CPU cores; "
          f"{results[0]['forward_flop_per_sample'] / 1e6:.1f} MFLOP per sample forward, "
          f"{TRAIN_PASSES}x in training (matrix products of the model's graph)")
    print(f"{'precision':16s} {'XLA':4s} {'optimizer':18s} {'train/s':>9s} {'x authors':>9s} {'%peak':>6s} "
          f"{'eval/s':>9s} {'x authors':>9s} {'%peak':>6s} {'GEMM peak':>10s}")
    for r in results:
        xla = ("on" if r["jit_effective"] else "OFF!") if r["jit"] else "off"
        print(f"{r['precision']:16s} {xla:4s} {r['optimizer']:18s} {r['train_samples_per_s']:9.0f} "
              f"{r['train_samples_per_s'] / AUTHORS['train']:9.2f} "
              f"{100 * r['train_peak_share']:6.1f} "
              f"{r['eval_samples_per_s']:9.0f} {r['eval_samples_per_s'] / AUTHORS['eval']:9.2f} "
              f"{100 * r['eval_peak_share']:6.1f} {r['gemm_peak_flops'] / 1e9:6.0f} GF/s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
