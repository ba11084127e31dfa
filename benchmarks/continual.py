"""The daily loop measured: warm start on each new day against retraining from scratch.

    python -m benchmarks.continual --log eleme-synthetic [--output-dir OUT]
    python -m benchmarks.continual --log ml100k-weeks --raw-dir ml-100k [--output-dir OUT]

A log cut into days (``--log``); the first ``--first-days`` K days are the start. For
each later day d that has a next day:

* (a) **warm start**: day d prepared on top of day d-1's dataset
  (:func:`pipelines.extend.extend_dataset`), trained from day d-1's model (a) with the
  warm-start recipe (``feseq_tf.train --warm-start``: one pass, embeddings kept);
* (b) **from scratch**: days 1..d prepared at once and trained with the recipe;
* (c) **frozen**: the model of days 1..K, never trained again;

each scored on day d+1 (every impression of it, prepared on top of the dataset the model
was trained on, so that its ids continue the model's vocabularies; an id the model has no
row for, a value new on day d+1 or one it never saw often enough, is scored through the
OOV row). Reported per day: test AUC of (a), (b), (c) (and the true click probability's
AUC where the log has it), wall time and peak memory (the training process's maximum
resident set) of (a) and (b). Every training runs as its own process
(``python -m feseq_tf.train``), the same settings for all: ``--model``, ``--seed``,
``--mixed-precision`` and ``--set`` apply to every run.

Logs:

* ``drift-synthetic``: the same day files generated with drift (:data:`DRIFT`): half
  of the users arrive on a later day, each day relists 10 % of the items under new ids,
  and every item's appeal takes a random walk (a step of 0.3 on the logit a day); the
  oracle's AUC is in the table.
* ``eleme-synthetic``: the built-in generator's Ele.me-layout day files ``D1_0`` ..
  ``D7_0`` (``--rows`` over the seven days), read by the Ele.me pipeline's reader with
  every line kept. Its world does not drift: each day brings users (a user's impressions
  fall on any day) but the items and their appeal stay.
* ``ml100k-weeks``: MovieLens 100K (``--raw-dir``, GroupLens layout) cut into calendar
  weeks from its first rating; the weeks before the last ``--days-scored + 1`` are the
  first day (K = 1), each of the last ``--days-scored + 1`` weeks a day (the first of them
  is trained only, the last scored only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from feseq_tf import cli

LOGS = ("drift-synthetic", "eleme-synthetic", "ml100k-weeks")
#: The drift of ``drift-synthetic`` (``pipelines.synthetic.simulate``'s knobs).
DRIFT = {"user_arrival": 0.5, "item_relist": 0.1, "appeal_drift": 0.3}
ELEME_DAYS = tuple(f"D{k}_0" for k in range(1, 8))
SECONDS_PER_WEEK = 7 * 86400

#: The training process: feseq_tf.train's command line, then its peak memory.
_CHILD = (
    "import atexit, resource, sys\n"
    "atexit.register(lambda: print('PEAK_RSS_KB', "
    "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True))\n"
    "from feseq_tf import train\n"
    "train.main(sys.argv[1:])\n"
)


def eleme_synthetic_days(work_dir: str, rows: int, seed: int, drift: dict | None = None):
    """(the day tables, the pipeline spec) of the Ele.me-layout synthetic log."""
    from pipelines import eleme
    from pipelines.synthetic.raw import generate

    raw = os.path.join(work_dir, "raw")
    if not os.path.isfile(os.path.join(raw, ELEME_DAYS[-1] + ".csv")):
        generate(raw, num_rows=rows, seed=seed, days=ELEME_DAYS, **(drift or {}))
    days = [eleme.read_days(raw, [d], sample_frac=1.0, seed=seed, progress=False)[0]
            for d in ELEME_DAYS]
    return days, eleme.pipeline_spec(min_count=10, seed=seed)


def ml100k_weeks(raw_dir: str, days_scored: int):
    """(the day tables, the pipeline spec) of MovieLens 100K cut into weeks."""
    from pipelines import movielens

    df = movielens.read_movielens(raw_dir)
    t = pd.to_numeric(df["timestamp"]).to_numpy()
    week = (t - t.min()) // SECONDS_PER_WEEK
    last = int(week.max())
    first = last - days_scored - 1  # it and the weeks before it are the first day
    day_of = np.maximum(week - first, 0)
    days = [df[day_of == d].reset_index(drop=True) for d in range(int(day_of.max()) + 1)]
    return days, movielens.pipeline_spec()


def train_process(dataset_dir: str, out_dir: str, args: argparse.Namespace,
                  extra: Sequence[str] = ()) -> dict[str, Any]:
    """Train in a process of its own: metrics.json, wall time and peak memory."""
    argv = [sys.executable, "-c", _CHILD, "--dataset", dataset_dir, "--output-dir", out_dir,
            "--model", args.model, "--seed", str(args.seed), "--mixed-precision",
            args.mixed_precision, "--no-export", "--no-attention-summaries", "--overwrite",
            *[a for item in args.set for a in ("--set", item)], *extra]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ))
    wall = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    with open(out_dir + ".log", "w") as fh:
        fh.write(log)
    if proc.returncode != 0:
        raise RuntimeError(f"training on {dataset_dir} failed (log: {out_dir}.log):\n{log[-2000:]}")
    peak = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("PEAK_RSS_KB")]
    with open(os.path.join(out_dir, "metrics.json")) as fh:
        metrics = json.load(fh)
    return {"run_dir": out_dir, "wall_s": round(wall, 1), "peak_mb": round(int(peak[-1]) / 1024),
            "epochs": metrics["epochs_run"]}


def score(run_dir: str, dataset_dir: str) -> dict[str, float]:
    """Test AUC of a run's model on every impression of a prepared dataset whose ids
    continue the model's (ids beyond its tables scored through the OOV row)."""
    from feseq_tf import metrics
    from feseq_tf.data import read_columns
    from feseq_tf.evaluate import load_model
    from feseq_tf.schema import OOV_ID, ORACLE_KEY, SPLITS, DatasetSpec

    model = load_model(run_dir)
    spec = model.spec
    data_spec = DatasetSpec.load(dataset_dir)
    names = spec.model_input_names() + [spec.label]
    if data_spec.has_oracle:
        names.append(ORACLE_KEY)
    parts = [read_columns(dataset_dir, s, names, spec=data_spec) for s in SPLITS]
    cols = {n: np.concatenate([p[n] for p in parts]) for n in names}
    for f in spec.fields:
        if not f.is_categorical:
            continue
        for name in (f.name, f.hist_name):
            if name in cols:
                ids = cols[name]
                ids[ids >= f.vocab_size] = OOV_ID
    inputs = {n: cols[n] for n in spec.model_input_names()}
    pred = np.asarray(model.predict(inputs, batch_size=8192, verbose=0)).ravel()
    out = {"auc": float(metrics.auc(cols[spec.label], pred)), "rows": int(len(pred))}
    if ORACLE_KEY in cols:
        out["oracle_auc"] = float(metrics.auc(cols[spec.label], cols[ORACLE_KEY]))
    return out


def protocol(days: list[pd.DataFrame], ps, work_dir: str, first_days: int,
             args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run (a), (b), (c) over the days; one row per scored day."""
    from pipelines import extend, generic

    def path(*parts: str) -> str:
        return os.path.join(work_dir, *parts)

    def prepare(frames: list[pd.DataFrame], out: str) -> str:
        generic.build_dataset(pd.concat(frames, ignore_index=True), ps, out, progress=False)
        return out

    def extend_to(frame: pd.DataFrame, base: str, out: str) -> str:
        extend.extend_dataset(frame, ps, base, out, progress=False)
        return out

    k = first_days
    start_data = prepare(days[:k], path("data", f"scratch_{k}"))
    print(f"days 1..{k}: {sum(len(d) for d in days[:k]):,} impressions; training the start "
          "model", flush=True)
    frozen = train_process(start_data, path("runs", f"scratch_{k}"), args)
    chain, warm = start_data, frozen["run_dir"]
    rows = []
    for d in range(k, len(days) - 1):  # day d+1 (1-based) is trained, d+2 scored
        day, nxt = d + 1, d + 2
        chain = extend_to(days[d], chain, path("data", f"chain_{day}"))
        a = train_process(chain, path("runs", f"warm_{day}"), args, ["--warm-start", warm])
        scratch = prepare(days[: d + 1], path("data", f"scratch_{day}"))
        b = train_process(scratch, path("runs", f"scratch_{day}"), args)
        test_chain = extend_to(days[d + 1], chain, path("data", f"test_chain_{nxt}"))
        test_scratch = extend_to(days[d + 1], scratch, path("data", f"test_scratch_{nxt}"))
        sa, sb, sc = (score(a["run_dir"], test_chain), score(b["run_dir"], test_scratch),
                      score(frozen["run_dir"], test_chain))
        row = {
            "day": day, "scored_on": nxt, "day_rows": len(days[d]),
            "rows_so_far": int(sum(len(x) for x in days[: d + 1])), "test_rows": sa["rows"],
            "auc_warm": sa["auc"], "auc_scratch": sb["auc"], "auc_frozen": sc["auc"],
            "oracle_auc": sa.get("oracle_auc"),
            "wall_warm_s": a["wall_s"], "wall_scratch_s": b["wall_s"],
            "peak_warm_mb": a["peak_mb"], "peak_scratch_mb": b["peak_mb"],
            "epochs_scratch": b["epochs"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        warm = a["run_dir"]
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The per-day table and the summary lines, as markdown."""
    lines = [
        "| day trained | scored on | its rows | (a) warm start | (b) from scratch | (c) frozen | "
        "oracle | wall (a) s | wall (b) s | peak (a) MB | peak (b) MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        oracle = f"{r['oracle_auc']:.4f}" if r.get("oracle_auc") is not None else ""
        lines.append(
            f"| {r['day']} | {r['scored_on']} | {r['day_rows']:,} | {r['auc_warm']:.4f} | "
            f"{r['auc_scratch']:.4f} | {r['auc_frozen']:.4f} | {oracle} | {r['wall_warm_s']:.0f} | "
            f"{r['wall_scratch_s']:.0f} | {r['peak_warm_mb']:,} | {r['peak_scratch_mb']:,} |"
        )
    gap = float(np.mean([r["auc_warm"] - r["auc_scratch"] for r in rows]))
    last = rows[-1]
    lines += [
        "",
        f"mean (a) - (b): {gap:+.4f} test AUC over {len(rows)} days; last day wall (a) / (b): "
        f"{last['wall_warm_s'] / last['wall_scratch_s']:.2f}; mean (a) - (c): "
        f"{np.mean([r['auc_warm'] - r['auc_frozen'] for r in rows]):+.4f}, (b) - (c): "
        f"{np.mean([r['auc_scratch'] - r['auc_frozen'] for r in rows]):+.4f}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.continual", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log", choices=LOGS, required=True)
    p.add_argument("--raw-dir", help="ml100k-weeks: the MovieLens 100K folder (u.data...)")
    p.add_argument("--rows", type=int, default=70_000,
                   help="*-synthetic: raw rows over the seven days (default 70,000)")
    p.add_argument("--first-days", type=int, default=2,
                   help="*-synthetic: days of the start model (default 2)")
    p.add_argument("--days-scored", type=int, default=4,
                   help="ml100k-weeks: the last weeks each trained and scored (default 4)")
    p.add_argument("--model", default="feseq")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mixed-precision", default="bfloat16")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every run (repeatable)")
    p.add_argument("--output-dir", default="runs/continual")
    return p


@cli.command
def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = build_parser().parse_args(argv)
    work = os.path.join(args.output_dir, args.log)
    os.makedirs(work, exist_ok=True)
    if args.log in ("drift-synthetic", "eleme-synthetic"):
        if not 2 <= args.first_days <= len(ELEME_DAYS) - 2:
            raise ValueError(f"--first-days must be in 2..{len(ELEME_DAYS) - 2}")
        drift = DRIFT if args.log == "drift-synthetic" else None
        days, ps = eleme_synthetic_days(work, args.rows, args.seed, drift)
        k = args.first_days
    else:
        if not args.raw_dir:
            raise ValueError("--log ml100k-weeks needs --raw-dir (the MovieLens 100K folder)")
        if args.days_scored < 1:
            raise ValueError("--days-scored must be at least 1")
        days, ps = ml100k_weeks(args.raw_dir, args.days_scored)
        k = 1
    rows = protocol(days, ps, work, k, args)
    text = table(rows)
    print(text, flush=True)
    with open(os.path.join(work, "continual.json"), "w") as fh:
        json.dump({"log": args.log, "args": vars(args), "rows": rows}, fh, indent=2)
    with open(os.path.join(work, "continual.md"), "w") as fh:
        fh.write(f"# {args.log}\n\n{text}\n")
    return rows


if __name__ == "__main__":
    main()
