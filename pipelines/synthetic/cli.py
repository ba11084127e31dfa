"""Command line of the synthetic pipeline: generate, prepare and optionally report a dataset.

Usage::

    python -m pipelines.synthetic --out DIR [--regime NAME] [--rows N] [--seed S] [--report]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from feseq_tf import cli
from pipelines.synthetic.dataset import TIME_UNIT_MINUTES, make_synthetic_dataset
from pipelines.synthetic.quality import REPORT_FILE, format_report, report
from pipelines.synthetic.raw import generate
from pipelines.synthetic.regimes import REGIMES
from pipelines.synthetic.simulation import (
    DEFAULT_MAX_LEN,
    DEFAULT_NUM_ROWS,
    DEFAULT_SEED,
    DEFAULT_TARGET_CTR,
    MAX_TARGET_CTR,
)
from pipelines.synthetic.world import (
    DEFAULT_CATALOG_SCALE,
    DEFAULT_IMPRESSIONS_PER_USER,
    DEFAULT_IMPRESSIONS_SIGMA,
    MAX_IMPRESSIONS_PER_USER,
)


@cli.command
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: generate, prepare and optionally report a synthetic dataset."""
    p = argparse.ArgumentParser(prog="python -m pipelines.synthetic",
                                description="Generate the synthetic Ele.me-layout dataset and prepare it.")
    p.add_argument("--out", required=True, help="prepared dataset directory (raw files go to OUT/raw)")
    p.add_argument("--regime", choices=sorted(REGIMES),
                   help="named generator settings (explicit flags override its values; default: "
                        "today's defaults, the 'default' regime)")
    p.add_argument("--rows", type=int, help=f"raw rows (default: the regime's, else {DEFAULT_NUM_ROWS})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN, help="history length (default 10)")
    p.add_argument("--min-count", type=int, help="vocabulary min count (default: 10 from 100k rows)")
    p.add_argument("--target-ctr", type=float, help=f"mean click probability in (0, {MAX_TARGET_CTR}] "
                                                    f"(default: the regime's, else {DEFAULT_TARGET_CTR})")
    p.add_argument("--impressions-per-user", type=float,
                   help="median of the log-normal impressions-per-user draw "
                        f"(default: the regime's, else {DEFAULT_IMPRESSIONS_PER_USER:g})")
    p.add_argument("--impressions-sigma", type=float,
                   help=f"log-sd of that draw (default: the regime's, else {DEFAULT_IMPRESSIONS_SIGMA:g})")
    p.add_argument("--max-impressions-per-user", type=int,
                   help=f"cap of a user's impressions (default: the regime's, else {MAX_IMPRESSIONS_PER_USER})")
    p.add_argument("--catalog-scale", type=float,
                   help="multiplier of the number of shops and items "
                        f"(default: the regime's, else {DEFAULT_CATALOG_SCALE:g})")
    p.add_argument("--time-unit", type=float, default=TIME_UNIT_MINUTES,
                   help=f"minutes per time-interval unit in the dataset spec (default {TIME_UNIT_MINUTES:g})")
    p.add_argument("--feedback", action="store_true",
                   help="add the labels of the history as the field 'feedback' (not in the paper)")
    p.add_argument("--raw-only", action="store_true", help="only write the raw and oracle files into OUT")
    p.add_argument("--report", action="store_true",
                   help="print oracle AUC, single-field LR AUC, captured lift and per-term AUCs")
    p.add_argument("--set", action="append", default=[], metavar="EFFECT=STRENGTH",
                   help="override an effect strength, e.g. --set history_shop=0 (repeatable)")
    args = p.parse_args(argv)
    strengths = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        try:
            strengths[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise SystemExit(f"--set expects EFFECT=STRENGTH with a number, got {item!r}.")
    knobs = {"regime": args.regime, "num_rows": args.rows, "target_ctr": args.target_ctr,
             "impressions_per_user": args.impressions_per_user,
             "impressions_sigma": args.impressions_sigma,
             "max_impressions_per_user": args.max_impressions_per_user,
             "catalog_scale": args.catalog_scale, **strengths}
    if args.raw_only:
        try:
            info = generate(args.out, seed=args.seed, max_len=args.max_len, **knobs)
        except ValueError as err:
            raise SystemExit(f"pipelines.synthetic: {err}") from None
        print(json.dumps({k: info[k] for k in ("files", "realized_ctr", "total_seconds")}))
        return info
    if not args.time_unit > 0:
        raise SystemExit(f"--time-unit must be > 0, got {args.time_unit}.")
    try:
        result = make_synthetic_dataset(args.out, seed=args.seed, max_len=args.max_len,
                                        min_count=args.min_count, time_unit=args.time_unit,
                                        feedback=args.feedback, **knobs)
    except ValueError as err:
        raise SystemExit(f"pipelines.synthetic: {err}") from None
    out: dict[str, Any] = {"spec": result.spec.to_dict()}
    print(json.dumps({"out": args.out, "regime": args.regime, "split_sizes": result.spec.split_sizes,
                      "ctr": result.report.get("ctr")}), flush=True)
    if args.report:
        rep = report(args.out, result=result)
        with open(os.path.join(args.out, REPORT_FILE), "w") as fh:
            json.dump(rep, fh, indent=2)
        print(format_report(rep), flush=True)
        out["report"] = rep
    return out

