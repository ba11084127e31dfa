"""What the attention of a short FESeq run shows on synthetic data with planted crosses.

    python -m benchmarks.attention_findings [--rows 40000] [--seed 1] [--output FILE.json]

Generates synthetic data (seed 7; the generator plants gender x category_1_id,
avg_price x rank_7 and time_type x category_1_id, and history relevance that decays with
recency) with time intervals in minutes (``time_unit=1``), trains FESeq with d = 8, no
embedding L2, Adam 5e-3 for one epoch (the best validation epoch in longer runs: later
epochs overfit), and reads the attention of 4,096 test samples:

* the pooling attention by position on the samples with a full history, relative to a
  uniform share (1 = uniform), as the paper's Figs. 7-8;
* the field attention of the planted pairs against the average pair (both directions
  summed) and their rank within their rows.

Prints the figures as JSON (and writes them to ``--output``). They are findings of one
short run, not properties of the model: ``tests/test_callbacks.py`` runs the same
measurement on less data and asserts only that the averaged maps are distributions.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any

import numpy as np

from feseq_tf import cli

PLANTED_PAIRS = (("gender", "category_1_id"), ("avg_price", "rank_7"), ("time_type", "category_1_id"))
DATA_SEED = 7
PROBE_SIZE = 4096


def measure(workdir: str, rows: int = 40_000, seed: int = 1) -> dict[str, Any]:
    """Train the short run under ``workdir`` and return what its attention shows.

    Returns a dict: the planted pairs' weights and the average pair's, their lift and
    ranks, the largest deviation of the field map from uniform, the number of full
    histories in the probe, the pooling attention by position (``pooling_relative_by_
    position``, summing to L + 1) and the raw field map's row sums (``field_row_sums``).
    """
    from feseq_tf import training
    from feseq_tf.config import preset
    from feseq_tf.explain import (
        TAG_INPUT_FIELDS,
        TAG_POOLING_MEAN,
        attention_matrices,
        pair_attention,
        probe_batch,
    )
    from feseq_tf.models.feseq import FESeq
    from feseq_tf.schema import DatasetSpec
    from pipelines import synthetic

    data = os.path.join(workdir, "data")
    synthetic.make_synthetic_dataset(data, num_rows=rows, seed=DATA_SEED, progress=False,
                                     time_unit=1.0)
    spec = DatasetSpec.load(data)
    config = preset("synthetic").override({
        "model": {"embedding_dim": 8, "transformer_heads": 2, "pooling_hidden": 16,
                  "mlp_units": [32], "dropout": 0.0, "embedding_l2": 0.0,
                  "embedding_stddev": 1e-4},
        "train": {"epochs": 1, "batch_size": 256, "eval_batch_size": 4096,
                  "learning_rate": 5e-3, "seed": seed},
    })
    training.set_seed(seed)
    model = FESeq(spec, config.model, name="feseq")
    training.fit(model, data, os.path.join(workdir, "run"), config, jit=False, verbose=0)

    probe = probe_batch(data, "test", probe_size=PROBE_SIZE, spec=spec)
    outputs = model.attention_model()(probe, training=False)
    outputs.pop("probability")
    mats = {m.tag: m for m in attention_matrices(outputs, probe["hist_len"], spec, config.model)}

    field = mats[TAG_INPUT_FIELDS]
    names = list(field.info.row_labels)
    index = {n: i for i, n in enumerate(names)}
    pair_weights, average_pair = pair_attention(field.values, names, PLANTED_PAIRS)
    planted = {f"{a} x {b}": weight for (a, b), weight in pair_weights.items()}
    row_ranks = {
        f"{a} -> {b}": int((field.values[index[a]] > field.values[index[a], index[b]]).sum()) + 1
        for a, b in PLANTED_PAIRS + tuple((b, a) for a, b in PLANTED_PAIRS)
    }
    full = probe["hist_len"] == spec.max_len
    pooling = np.asarray(outputs["pooling_attention"], dtype=np.float64)[full] * (spec.max_len + 1)
    relative = pooling.mean(axis=0)  # positions -L .. -1, target
    return {
        "rows": rows, "seed": seed, "fields": len(names),
        "planted_pair_weight": planted, "average_pair_weight": average_pair,
        "planted_lift": float(np.mean(list(planted.values())) / average_pair),
        f"planted_rank_in_row_of_{len(names)}": row_ranks,
        "max_deviation_from_uniform": float(np.abs(field.values - 1.0 / len(names)).max()),
        "field_row_sums": np.asarray(field.values, dtype=np.float64).sum(axis=1).tolist(),
        "full_history_samples": int(full.sum()),
        "pooling_relative_by_position": dict(zip(mats[TAG_POOLING_MEAN].info.col_labels,
                                                 np.round(relative, 4).tolist(), strict=True)),
        "pooling_most_recent": float(relative[-2]),
        "pooling_older_mean": float(relative[:-2].mean()),
        "max_len": spec.max_len,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.attention_findings",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=40_000, help="synthetic rows (default 40,000)")
    p.add_argument("--seed", type=int, default=1, help="training seed (default 1)")
    p.add_argument("--output", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.rows < 1000:
        raise SystemExit(f"--rows {args.rows}: at least 1,000 rows, so that the test split "
                         "has full histories to read")
    with tempfile.TemporaryDirectory() as workdir:
        found = measure(workdir, rows=args.rows, seed=args.seed)
    print(json.dumps(found, indent=2))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as fh:
            json.dump(found, fh, indent=2)
    return found


entry = cli.command(main)

if __name__ == "__main__":
    entry()
