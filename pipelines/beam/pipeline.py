"""The generic pipeline as an Apache Beam pipeline: :func:`build` composes it,
:func:`run` runs it.

Same output as :func:`pipelines.generic.build_dataset` on the shards concatenated in path
order (the same records per split, vocabularies, dataset spec and report counts), with
memory per worker bounded by one input shard, one user's impressions and the small
statistics of :mod:`pipelines.beam.statistics`, not by the log:

1. read and clean every shard (:mod:`pipelines.beam.rows`);
2. cut points, vocabularies, numeric ranges and user ids over the whole log
   (:mod:`pipelines.beam.statistics`);
3. group each user's impressions and encode its records with the single-machine code
   (:mod:`pipelines.beam.users`); with ``history_block`` set, a user's impressions are
   grouped per block of that many timestamp units instead, the last ``max_len``
   impressions before a block carried into it (the same histories; memory bounded by
   the largest user block, for users with millions of impressions);
4. write ``{split}/part-*.tfrecord`` (as many shards as the single-machine pipeline;
   training records in a seeded pseudo-random order, valid and test records in time
   order within each shard), ``vocab/``, ``report.json`` and, last,
   ``dataset_spec.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam

from feseq_tf import schema
from pipelines.beam.rows import FILES_TAG, FIRSTS_TAG, ReadShard
from pipelines.beam.statistics import ComputeCutPoints, CutPoints, TrainingStatistics, UserIds
from pipelines.beam.users import STATS_TAG, EncodeUser, Fitted, SumStats, contexts, time_order
from pipelines.spec import PipelineSpec
from pipelines.transforms import field_specs
from pipelines.writer import shard_counts, shard_paths, write_json


def match_inputs(pattern: str) -> list[str]:
    """The files of a glob (any filesystem Beam reads), sorted by path."""
    from apache_beam.io.filesystems import FileSystems

    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not paths:
        raise ValueError(f"--input {pattern!r} matches no file.")
    return paths


def _fit(
    cuts: CutPoints,
    ps: PipelineSpec,
    vocabs: dict[str, list[str]],
    ranges: dict[str, tuple[float, float]],
    files: list[dict[str, Any]],
    users: int,
) -> Fitted:
    has_oracle = {f["has_oracle"] for f in files}
    if len(has_oracle) > 1:
        with_oracle = sorted(f["file"] for f in files if f["has_oracle"])
        raise ValueError(
            f"Only some input files have the column {schema.ORACLE_KEY!r} ({with_oracle}): "
            "give it to all files or none."
        )
    vocabs = dict(vocabs)
    spec = ps.dataset_spec(
        field_specs(ps, vocabs, ranges),
        has_oracle=has_oracle == {True},
        split_sizes=cuts.sizes,
        extra={"rows_in": sum(f["rows_in"] for f in files)},
    )
    return Fitted(
        spec=spec,
        cuts=cuts,
        vocabularies=vocabs,
        ranges=ranges,
        shards=shard_counts(cuts.sizes, ps.num_shards),
        users=users,
    )


def _all_shards(fitted: Fitted) -> Iterator[tuple[tuple[str, int], None]]:
    """Every shard once (so that empty shards are written too)."""
    for split, count in fitted.shards.items():
        for i in range(count):
            yield (split, i), None


def _upload(local: str, path: str) -> None:
    if "://" not in path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        shutil.move(local, path)
        return
    from apache_beam.io.filesystems import FileSystems

    with open(local, "rb") as src, FileSystems.create(path) as dst:
        shutil.copyfileobj(src, dst, 1 << 24)


class WriteShard(beam.DoFn):
    """``((split, shard), [(order key, record) or None])`` -> the shard's TFRecord file."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def process(
        self, element: tuple[tuple[str, int], Iterable[Any]], fitted: Fitted
    ) -> Iterator[int]:
        import tensorflow as tf

        (split, shard), items = element
        records = sorted((x for x in items if x is not None), key=lambda x: x[0])
        path = shard_paths(self.out_dir, split, fitted.shards[split])[shard]
        with tempfile.TemporaryDirectory(prefix="feseq_beam_") as tmp:
            local = os.path.join(tmp, os.path.basename(path))
            with tf.io.TFRecordWriter(local) as writer:
                for _, record in records:
                    writer.write(record)
            _upload(local, path)
        yield len(records)


def make_report(
    ps: PipelineSpec, fitted: Fitted, files: list[dict[str, Any]], stats: dict[str, float]
) -> dict[str, Any]:
    """``report.json``: the counts of :func:`pipelines.generic.build_dataset`'s report
    (timings are the runner's: its monitoring shows every stage)."""
    spec = fitted.spec
    dropped: dict[str, int] = {}
    for f in files:
        for reason, count in f["rows_dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + count
    samples = {s: int(stats.get(f"samples/{s}", 0)) for s in schema.SPLITS}

    def mean(key: str, s: str, n: int | None = None) -> float | None:
        n = samples[s] if n is None else n
        return float(stats.get(f"{key}/{s}", 0)) / n if n else None

    return {
        "dataset": spec.name,
        "rows_read": sum(f["rows_read"] for f in files),
        "rows_dropped": {k: int(v) for k, v in sorted(dropped.items())},
        "rows_dropped_total": int(sum(dropped.values())),
        "rows_kept": sum(samples.values()),
        "users": fitted.users,
        "samples": samples,
        "ctr": {s: mean("label_sum", s) for s in schema.SPLITS},
        "mean_hist_len": {s: mean("hist_len_sum", s) for s in schema.SPLITS},
        "vocab_sizes": {f.name: f.vocab_size for f in spec.fields if f.is_categorical},
        "oov_rate_test": {
            f.name: mean("oov_test", f.name, samples["test"])
            for f in spec.fields
            if f.is_categorical and not f.history_only
        },
        "min_count": ps.min_count,
        "max_len": ps.max_len,
        "timings_s": {},
        "source": {"files": [f["file"] for f in sorted(files, key=lambda f: f["index"])]},
    }


def _finish(
    written: int,
    out_dir: str,
    ps: PipelineSpec,
    fitted: Fitted,
    files: list[dict[str, Any]],
    stats: dict[str, float],
) -> None:
    """Vocabularies, report and, last, the dataset spec (after every shard)."""
    report = make_report(ps, fitted, files, stats)
    with tempfile.TemporaryDirectory(prefix="feseq_beam_") as tmp:
        local = []
        for name, values in fitted.vocabularies.items():
            local.append(os.path.relpath(schema.write_vocab(tmp, name, values), tmp))
        write_json(os.path.join(tmp, "report.json"), report)
        local.append("report.json")
        local.append(os.path.relpath(fitted.spec.save(tmp), tmp))
        for rel in local:
            _upload(os.path.join(tmp, rel), os.path.join(out_dir, rel))


def remove_stale(out_dir: str) -> None:
    """Delete the shards, vocabularies, report and spec of an earlier run."""
    from apache_beam.io.filesystems import FileSystems

    patterns = [os.path.join(out_dir, s, "part-*.tfrecord") for s in schema.SPLITS]
    patterns += [os.path.join(out_dir, "vocab", "*.txt")]
    patterns += [os.path.join(out_dir, n) for n in (schema.SPEC_FILE, "report.json")]
    stale = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
    if stale:
        FileSystems.delete(stale)


def build(
    p: beam.Pipeline,
    paths: Sequence[str],
    ps: PipelineSpec,
    out_dir: str,
    *,
    history_block: int | None = None,
) -> None:
    """Add the pipeline to ``p``: the files ``paths`` (in this order) -> ``out_dir``."""
    if history_block is not None and (
        not isinstance(history_block, int) or isinstance(history_block, bool) or history_block < 1
    ):
        raise ValueError(f"history_block must be an integer >= 1, got {history_block!r}.")
    read = (
        p
        | "Files" >> beam.Create(list(enumerate(paths)))
        | "Spread" >> beam.Reshuffle()
        | "Read" >> beam.ParDo(ReadShard(ps)).with_outputs(FILES_TAG, FIRSTS_TAG, main="rows")
    )
    rows, files = read.rows, read[FILES_TAG] | "FileReports" >> beam.combiners.ToList()
    cuts = rows | "CutPoints" >> ComputeCutPoints(ps)
    vocabs, ranges = rows | "Statistics" >> TrainingStatistics(ps, cuts)
    ids, users = read[FIRSTS_TAG] | "UserIds" >> UserIds()
    fitted = cuts | "Fit" >> beam.Map(
        _fit,
        ps,
        beam.pvalue.AsSingleton(vocabs),
        beam.pvalue.AsSingleton(ranges),
        beam.pvalue.AsSingleton(files),
        beam.pvalue.AsSingleton(users),
    )

    def block_of(kv: tuple[str, Any]) -> tuple[tuple[str, int], Any]:
        return (kv[0], kv[1].time // history_block if history_block else 0), kv[1]

    keyed = rows | "KeyByBlock" >> beam.Map(block_of)
    if history_block:
        tails = (
            keyed
            | "LastRows" >> beam.combiners.Top.LargestPerKey(ps.max_len, key=time_order)
            | "TailOfUser" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
        )
        context = (
            {"group_id": ids, "tails": tails}
            | "JoinTails" >> beam.CoGroupByKey()
            | "Carry" >> beam.FlatMap(contexts, ps.max_len)
        )
    else:
        context = ids | "NoCarry" >> beam.Map(lambda kv: ((kv[0], 0), (kv[1], [])))
    encoded = (
        {"rows": keyed, "context": context}
        | "GroupUser" >> beam.CoGroupByKey()
        | "Encode"
        >> beam.ParDo(EncodeUser(ps), beam.pvalue.AsSingleton(fitted)).with_outputs(
            STATS_TAG, main="records"
        )
    )
    stats = encoded[STATS_TAG] | "SumStats" >> beam.CombineGlobally(SumStats())
    every_shard = fitted | "EveryShard" >> beam.FlatMap(_all_shards)
    written = (
        (encoded.records, every_shard)
        | "WithEmpty" >> beam.Flatten()
        | "GroupShard" >> beam.GroupByKey()
        | "WriteShard" >> beam.ParDo(WriteShard(out_dir), beam.pvalue.AsSingleton(fitted))
        | "Written" >> beam.CombineGlobally(sum)
    )
    _ = written | "Finish" >> beam.Map(
        _finish,
        out_dir,
        ps,
        beam.pvalue.AsSingleton(fitted),
        beam.pvalue.AsSingleton(files),
        beam.pvalue.AsSingleton(stats),
    )


def run(
    input_pattern: str,
    pipeline_spec: PipelineSpec,
    out_dir: str,
    *,
    history_block: int | None = None,
    options: beam.options.pipeline_options.PipelineOptions | None = None,
) -> dict[str, Any] | None:
    """Prepare a dataset from the shards of ``input_pattern`` with Beam.

    Args:
        input_pattern: str. Glob of CSV (with header) or Parquet shards.
        pipeline_spec: PipelineSpec. Columns and options.
        out_dir: str. Output directory (local or any filesystem Beam writes).
        history_block: int or None. Group each user's impressions per block of this many
            timestamp units (memory bounded by the largest user block). None groups
            whole users.
        options: PipelineOptions or None. Runner and its options (None: DirectRunner).

    Returns:
        The report, read back when the output directory is local; else None.
    """
    paths = match_inputs(input_pattern)
    remove_stale(out_dir)
    with beam.Pipeline(options=options) as p:
        build(p, paths, pipeline_spec, out_dir, history_block=history_block)
    report_path = os.path.join(out_dir, "report.json")
    if os.path.exists(report_path):
        with open(report_path) as fh:
            return json.load(fh)
    return None
