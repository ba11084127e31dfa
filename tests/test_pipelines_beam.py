"""The Beam pipeline (pipelines.beam) writes what the single-machine pipeline writes."""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest

pytest.importorskip("apache_beam")

from feseq_tf import schema  # noqa: E402
from pipelines import generic  # noqa: E402
from pipelines.beam import cli as beam_cli  # noqa: E402
from pipelines.beam import users as beam_users  # noqa: E402
from pipelines.beam.statistics import CutPoints, _boundaries, _cut_points  # noqa: E402
from pipelines.spec import PipelineSpec  # noqa: E402

HEADER = "user,ts,item,shop,x,label,oracle_prob"


def _log_lines(seed: int = 0) -> list[str]:
    """A small log: a heavy user (more than max_len), users with one impression, many
    ties in time, and malformed rows of every kind."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(90):
        user = "heavy" if i % 3 == 0 else f"u{rng.integers(0, 25)}"
        ts = int(rng.integers(0, 12)) * 10  # 12 distinct timestamps: ties everywhere
        item = f"i{rng.zipf(1.6) % 9}" if i % 11 else " NULL "
        shop = f"s{rng.integers(0, 40)}"
        x = "" if i % 13 == 0 else f"{rng.normal():.3f}"
        lines.append(f"{user},{ts},{item},{shop},{x},{int(rng.random() < 0.3)},{rng.random():.3f}")
    lines += [f"single{k},{5 + k},i1,s1,0.5,1,0.5" for k in range(3)]
    lines += [
        ",30,i1,s1,1.0,0,0.2",  # missing user
        "u1,abc,i1,s1,1.0,0,0.2",  # non-numeric timestamp
        "u1,7.5,i1,s1,1.0,0,0.2",  # non-integer timestamp
        "u2,40,i1,s1,1.0,2,0.2",  # bad label
        "u3,40,i1,s1,oops,1,0.2",  # non-numeric field
        "late_dropped,50,i1,s1,1.0,7,0.2",  # a user seen first on a dropped row
        "u4,40,i1,s1,1.0,0,0.2,extra",  # wrong column count
        "late_dropped,60,i2,s2,2.0,1,0.3",
    ]
    order = rng.permutation(len(lines))
    return [lines[i] for i in order]


def _spec(tmp_path) -> str:
    spec = PipelineSpec(
        name="beam_tiny",
        user_key="user",
        timestamp="ts",
        non_sequential_fields=[{"name": "user"}, {"name": "x", "type": "numeric"}],
        sequential_fields=[
            {"name": "item"},
            {"name": "shop", "role": "context", "hash_buckets": 16},
        ],
        max_len=3,
        min_count=2,
        num_shards=2,
        feedback=True,
    )
    return spec.save(str(tmp_path / "spec.yaml"))


def _records(out_dir: str, split: str) -> collections.Counter:
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(out_dir, split, "part-*.tfrecord")))
    found = collections.Counter()
    for raw in tf.data.TFRecordDataset(files).as_numpy_iterator():
        example = tf.train.Example.FromString(raw)
        features = []
        for name, feature in sorted(example.features.feature.items()):
            kind = feature.WhichOneof("kind")
            features.append((name, tuple(getattr(feature, kind).value)))
        found[tuple(features)] += 1
    return found


def _vocabularies(out_dir: str) -> dict[str, list[str]]:
    names = sorted(os.listdir(os.path.join(out_dir, "vocab")))
    return {n: schema.read_vocab(out_dir, n[: -len(".txt")]) for n in names}


def _json(out_dir: str, name: str) -> dict:
    with open(os.path.join(out_dir, name)) as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The log in two shards, prepared by Beam (whole users in one batch, and per time
    block in batches of a few impressions), and the shards concatenated, prepared by
    pipelines.generic."""
    tmp = tmp_path_factory.mktemp("beam")
    lines = _log_lines()
    shards = tmp / "shards"
    shards.mkdir()
    half = len(lines) // 2
    for i, part in enumerate((lines[:half], lines[half:])):
        (shards / f"part-{i}.csv").write_text("\n".join([HEADER, *part]) + "\n")
    (tmp / "all.csv").write_text("\n".join([HEADER, *lines]) + "\n")
    spec = _spec(tmp)
    common = ["--spec", spec, "--quiet"]
    assert (
        generic.main(["--input", str(tmp / "all.csv"), "--out", str(tmp / "single"), *common]) == 0
    )
    glob = str(shards / "*.csv")
    assert beam_cli.main(["--input", glob, "--spec", spec, "--out", str(tmp / "beam")]) == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(beam_users, "BATCH_ROWS", 7)  # many batches, blocks of a user in one
        argv = ["--input", glob, "--spec", spec, "--out", str(tmp / "beam_blocks")]
        assert beam_cli.main([*argv, "--history-block", "25"]) == 0
    return tmp


@pytest.mark.slow
@pytest.mark.parametrize("out", ["beam", "beam_blocks"])
def test_beam_writes_the_same_records_per_split_as_the_single_machine_pipeline(prepared, out):
    for split in schema.SPLITS:
        expected = _records(str(prepared / "single"), split)
        assert sum(expected.values()) > 0
        assert _records(str(prepared / out), split) == expected, split


@pytest.mark.parametrize("out", ["beam", "beam_blocks"])
def test_beam_writes_the_same_vocabularies_spec_and_shards(prepared, out):
    single, beam = str(prepared / "single"), str(prepared / out)
    assert _vocabularies(beam) == _vocabularies(single)
    assert _json(beam, schema.SPEC_FILE) == _json(single, schema.SPEC_FILE)
    for split in schema.SPLITS:
        assert sorted(os.listdir(os.path.join(beam, split))) == sorted(
            os.listdir(os.path.join(single, split))
        )


def test_beam_report_has_the_same_counts(prepared):
    single, beam = (
        _json(str(prepared / "single"), "report.json"),
        _json(str(prepared / "beam"), "report.json"),
    )
    assert beam["rows_dropped"]["malformed:wrong_column_count"] == 1
    assert beam["rows_dropped"]["bad_label:label"] == 2
    for key in (
        "rows_read",
        "rows_dropped",
        "rows_dropped_total",
        "rows_kept",
        "users",
        "samples",
        "vocab_sizes",
        "min_count",
        "max_len",
    ):
        assert beam[key] == single[key], key
    for key in ("ctr", "mean_hist_len", "oov_rate_test"):
        assert beam[key].keys() == single[key].keys()
        for name, value in single[key].items():
            assert beam[key][name] == pytest.approx(value, rel=1e-6), (key, name)


def test_heavy_user_histories_are_cut_at_max_len(prepared):
    hist_lens = [
        dict(features)["hist_len"][0]
        for split in schema.SPLITS
        for features in _records(str(prepared / "beam_blocks"), split)
    ]
    assert max(hist_lens) == 3 and min(hist_lens) == 0


def test_cut_points_split_ties_at_a_timestamp_in_input_order():
    ps = PipelineSpec(name="t", user_key="u", timestamp="t", sequential_fields=["i"])
    # 10 impressions: time 1 x4 (positions 9, 3, 5, 7), time 2 x6 -> train 8, valid 1, test 1.
    bounds = _boundaries([(1, 4), (2, 6)], ps)
    assert bounds["sizes"] == {"train": 8, "valid": 1, "test": 1}
    cuts = _cut_points([(2, [20, 11, 14, 12, 13, 10])], bounds)
    assert cuts.cuts == ((2, 14), (2, 20))
    assert [cuts.split_of(2, p) for p in (10, 11, 12, 13, 14, 20)] == [0, 0, 0, 0, 1, 2]
    times, pos = np.array([1, 2, 2, 2]), np.array([9, 13, 14, 20])
    assert cuts.split_array(times, pos).tolist() == [0, 0, 1, 2]
    assert CutPoints({}, (None, None)).split_of(99, 0) == 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    spec = _spec(tmp_path)
    argv = ["--input", str(tmp_path / "none-*.csv"), "--spec", spec, "--out", str(tmp_path)]
    assert beam_cli.main(argv) == 2
    assert "matches no file" in capsys.readouterr().err
    with pytest.raises(ValueError, match="history_block"):
        from pipelines.beam.pipeline import build

        build(None, [], PipelineSpec.load(spec), str(tmp_path), history_block=0)
