"""Command line of the Beam pipeline: a thin shell over :func:`pipelines.beam.pipeline.run`.

    python -m pipelines.beam --input 'logs/part-*.parquet' --spec spec.yaml --out DIR \\
        [--runner DirectRunner|DataflowRunner|FlinkRunner|SparkRunner] [beam options]

Arguments it does not know (``--project``, ``--region``, ``--temp_location``,
``--flink_master``, ``--direct_num_workers``...) are Beam pipeline options.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from feseq_tf import cli

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner")


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipelines.beam --input GLOB --spec SPEC.yaml --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.beam",
        description="Turn CSV/Parquet impression shards into a prepared FESeq dataset "
        "with Apache Beam (the output of python -m pipelines.generic on the shards "
        "concatenated in path order). Other arguments are Beam pipeline options.",
    )
    parser.add_argument(
        "--input", required=True, help="Glob of CSV (with header) or Parquet shards."
    )
    parser.add_argument("--spec", required=True, help="Pipeline spec (YAML or JSON).")
    parser.add_argument("--out", required=True, help="Output dataset directory.")
    parser.add_argument("--runner", default="DirectRunner", choices=RUNNERS)
    parser.add_argument(
        "--history-block",
        type=int,
        default=None,
        metavar="UNITS",
        help="Group each user's impressions per block of this many timestamp units, "
        "carrying the last max_len into the next block (for users with millions of "
        "impressions; the output is the same). Default: whole users.",
    )
    parser.add_argument(
        "--feedback",
        action="store_true",
        help="Add the labels of the history as the field 'feedback' (as 'feedback: true' "
        "in the spec).",
    )
    args, beam_args = parser.parse_known_args(argv)
    try:
        from apache_beam.options.pipeline_options import PipelineOptions

        from pipelines.beam.pipeline import run
        from pipelines.spec import PipelineSpec
    except ImportError as err:
        print(f"{cli.error_line(err)}; install the extra: pip install 'feseq-tf[beam]'", file=sys.stderr)
        return 2
    try:
        spec = PipelineSpec.load(args.spec)
        if args.feedback:
            spec = dataclasses.replace(spec, feedback=True)
        options = PipelineOptions([f"--runner={args.runner}", *beam_args])
        report = run(args.input, spec, args.out, history_block=args.history_block, options=options)
    except (ValueError, FileNotFoundError) as err:
        print(cli.error_line(err), file=sys.stderr)
        return 2
    samples = report["samples"] if report else None
    print(json.dumps({"out": args.out, "samples": samples}))
    return 0
