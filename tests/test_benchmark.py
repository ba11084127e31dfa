"""The experiment-suite command ``feseq_tf.benchmark``: suites, tables, resumability."""

from __future__ import annotations

import csv
import json
import math
import os

import pytest

from feseq_tf import benchmark, train
from feseq_tf.config import MODEL_NAMES


def _resolved(suite: str) -> dict[str, dict]:
    """Each trained variant's resolved config, as the run would resolve it (nothing
    trained); the GBDT yardstick row has none."""
    args = benchmark.build_parser().parse_args(["--suite", suite])
    return {
        v.name: benchmark.run_config(args, v, 1, "synthetic")
        for v in benchmark.SUITES[suite]
        if v.model != benchmark.GBDT
    }


def _feseq_variants(suite: str) -> dict[str, dict]:
    """The suite's FESeq variants: every trained row but logistic regression."""
    resolved = _resolved(suite)
    assert resolved.pop("lr").model_name == "lr"
    return resolved


def test_baselines_suite_compares_architectures_with_equal_inputs():
    baselines = _resolved("baselines")
    assert list(baselines) == [
        "feseq", "feseq_paper", "feseq_extra", "deepfm", "autoint", "dcnv2", "din", "din_extra",
        "bst", "bst_extra", "dmr", "dmr_extra", "lr",
    ]
    assert {c.model_name for c in baselines.values()} == set(MODEL_NAMES)
    extra = ("history_match", "wide")
    for name in ("deepfm", "autoint", "dcnv2", "din", "bst", "dmr"):  # published inputs
        assert not any(getattr(baselines[name].model, f) for f in extra), name
    for name in ("din", "bst", "dmr", "feseq"):  # FESeq's inputs (the synthetic preset's)
        assert all(getattr(baselines[f"{name}_extra"].model, f) for f in extra), name
    assert baselines["feseq_extra"].model.target_in_output
    paper = baselines["feseq_paper"].model
    assert not any(getattr(paper, f) for f in (*extra, "target_in_output"))
    # on the synthetic preset, FESeq as the preset runs it is FESeq with the extra inputs:
    # one training; FESeq as the paper is another
    key = benchmark.training_key
    assert key(baselines["feseq"]) == key(baselines["feseq_extra"])
    assert key(baselines["feseq"]) != key(baselines["feseq_paper"])
    assert key(baselines["feseq_paper"]) == key(
        baselines["feseq"].override({"model": {"history_match": False, "wide": False,
                                               "target_in_output": False}})
    )


def test_suites_hold_the_papers_variants_as_valid_configs():
    ablations = _feseq_variants("ablations")
    full = ablations.pop("full").model
    expected = {
        "no_int": ("input_interaction_layers", 0),
        "no_nonseq": ("nonseq_in_interaction", False),
        "no_pos": ("use_position", False),
        "no_time": ("use_time", False),
        "no_causal": ("causal", False),
        "mean_pooling": ("pooling", "mean"),
        "target_pooling": ("pooling", "target"),
        "dot_attention": ("attention", "dot"),
        "din_attention": ("attention", "din"),
        "no_scale": ("attention_scale", False),
        "no_history": ("use_history", False),
    }
    extra_inputs = {  # without each on the synthetic preset, with each on the recipe
        "no_match": ("history_match", False),
        "no_wide": ("wide", False),
        "no_target_in_output": ("target_in_output", False),
        "with_match": ("history_match", True),
        "with_wide": ("wide", True),
        "with_target_in_output": ("target_in_output", True),
    }
    assert set(ablations) == set(expected) | set(extra_inputs)
    for name, (field, value) in expected.items():
        model = ablations[name].model
        assert getattr(model, field) == value != getattr(full, field), name
    resolved = _resolved("ablations")
    for name, (field, value) in extra_inputs.items():
        assert getattr(ablations[name].model, field) == value, name
        same = benchmark.training_key(resolved[name]) == benchmark.training_key(resolved["full"])
        assert same == (value == getattr(full, field)), name  # a row equal to full shares it
    depth = _feseq_variants("depth")
    pairs = {
        (c.model.input_interaction_layers, c.model.target_interaction_layers)
        for c in depth.values()
    }
    assert pairs == {(0, 2), (1, 2), (2, 2), (3, 2), (2, 0), (2, 1), (2, 3)}
    assert all(c.model_name == "feseq" for c in [*ablations.values(), *depth.values()])
    embedding = _feseq_variants("embedding")
    assert [c.model.embedding_dim for c in embedding.values()] == [8, 16, 32, 64]


@pytest.mark.parametrize("suite", sorted(benchmark.SUITES))
def test_every_suite_ends_with_logistic_regression_and_the_gbdt_yardstick(suite):
    variants = benchmark.SUITES[suite]
    assert [(v.name, v.label, v.model) for v in variants[-2:]] == [
        ("lr", "Logistic regression", "lr"),
        ("gbdt", "GBDT yardstick", benchmark.GBDT),
    ]
    names = [v.name for v in variants]
    assert len(names) == len(set(names)) and names.count("lr") == 1
    # --models picks or leaves them out like any variant.
    first = variants[0].name
    assert [v.name for v in benchmark.select_variants(suite, f"gbdt,{first}")] == [first, "gbdt"]
    assert [v.name for v in benchmark.select_variants(suite, first)] == [first]


def _save_spec(directory: str) -> str:
    from feseq_tf.schema import DatasetSpec, FieldSpec

    spec = DatasetSpec(
        name="tiny",
        max_len=2,
        fields=(FieldSpec("item", "item", "categorical", sequential=True, vocab_size=4),),
        split_sizes={"train": 8, "valid": 2, "test": 2},
    )
    os.makedirs(directory)
    spec.save(directory)
    return directory


def test_gbdt_rows_are_fitted_once_per_seed_and_cached(tmp_path, monkeypatch):
    from feseq_tf import yardstick

    calls = []

    def fake_gbdt_run(dataset_dir, *, seed):
        calls.append(seed)
        test = {"auc": 0.7 + seed / 100, "gauc": 0.6, "logloss": 0.5}
        return {"test": test, "valid": test, "trees": 3, "features": ["a"], "seconds": 0.1}

    monkeypatch.setattr(yardstick, "gbdt_run", fake_gbdt_run)
    data = _save_spec(str(tmp_path / "data"))
    run_dir = str(tmp_path / "gbdt" / "seed2")
    metrics, fitted = benchmark.run_gbdt(data, run_dir, 2)
    assert fitted and calls == [2] and metrics["test"]["auc"] == pytest.approx(0.72)
    again, fitted = benchmark.run_gbdt(data, run_dir, 2)
    assert not fitted and calls == [2] and again == metrics
    with pytest.raises(train.UsageError, match="GBDT yardstick of another dataset or seed"):
        benchmark.run_gbdt(data, run_dir, 3)


def test_gbdt_row_has_no_parameters_or_throughput_and_is_never_bolded():
    def run(auc: float, **extra) -> dict:
        return {"test": {"auc": auc, "gauc": auc, "logloss": 1 - auc}, **extra}

    lr = benchmark.summarise(
        benchmark.REFERENCE_ROWS[0], [run(0.70, parameters=40, train_samples_per_s=9000.0)]
    )
    feseq = benchmark.summarise(
        benchmark.Variant("feseq", "FESeq"),
        [run(0.72, parameters=900, train_samples_per_s=100.0)],
    )
    gbdt = benchmark.summarise(benchmark.REFERENCE_ROWS[1], [run(0.80), run(0.82)])
    assert gbdt["parameters"] is None and math.isnan(gbdt["train_samples_per_s"])
    table = benchmark.markdown_table([feseq, lr, gbdt], "t")
    assert "| FESeq | **0.7200 ± 0.0000** |" in table
    assert "| GBDT yardstick | 0.8100 ± 0.0141 |" in table and "**0.81" not in table
    assert table.rstrip().endswith("| - | - |")  # the GBDT row: no parameters, no throughput
    assert "| Logistic regression | 0.7000 ± 0.0000 |" in table and "| 40 | 9,000 |" in table


def test_variant_overrides_come_after_the_users():
    args = benchmark.build_parser().parse_args(
        ["--suite", "embedding", "--set", "model.embedding_dim=4", "--epochs", "2"]
    )
    variant = benchmark.SUITES["embedding"][0]
    config = benchmark.run_config(args, variant, 3, "synthetic")
    assert config.model.embedding_dim == 8 and config.train.epochs == 2 and config.train.seed == 3
    # The same through the training API's own resolution.
    same = train.resolve_config(
        "synthetic", overrides={"model": {"embedding_dim": 8}, "train": {"epochs": 2, "seed": 3}}
    )
    assert config == same


def test_unknown_variants_are_rejected_with_the_known_ones():
    with pytest.raises(SystemExit, match="known:.*no_time"):
        benchmark.main(["--suite", "ablations", "--models", "no_time,w/o Time"])


def test_summary_is_mean_and_sample_std_and_the_table_bolds_the_best():
    variant = benchmark.Variant("a", "A")
    runs = [
        {
            "test": {"auc": 0.70, "gauc": 0.60, "logloss": 0.30},
            "parameters": 10,
            "train_samples_per_s": 100.0,
        },
        {
            "test": {"auc": 0.72, "gauc": 0.62, "logloss": 0.20},
            "parameters": 10,
            "train_samples_per_s": float("nan"),
        },
    ]
    row = benchmark.summarise(variant, runs)
    assert row["auc_mean"] == pytest.approx(0.71) and row["auc_std"] == pytest.approx(
        0.02 / math.sqrt(2)
    )
    assert row["train_samples_per_s"] == 100.0 and "captured_lift_mean" not in row
    worse = dict(row, label="B", auc_mean=0.5, logloss_mean=0.9)
    table = benchmark.markdown_table([row, worse], "t")
    assert "| A | **0.7100 ± 0.0141** |" in table and "| B | 0.5000 ± 0.0141 |" in table
    assert "Captured lift" not in table


@pytest.mark.slow
def test_suite_trains_the_missing_seeds_writes_tables_and_a_rerun_trains_nothing(
    tiny_baseline_suite, capsys, tmp_path
):
    # Seed 1 of every baseline is already done (the fixture); seed 2 of two is not.
    tiny_baseline_suite = tiny_baseline_suite.copy(str(tmp_path / "suite"))
    out = tiny_baseline_suite.output_dir
    argv = tiny_baseline_suite.argv + ["--models", "autoint,deepfm", "--seeds", "2"]
    seed1 = [
        os.path.join(tiny_baseline_suite.run_dir(n), "metrics.json") for n in ("deepfm", "autoint")
    ]
    seed1_mtimes = [os.stat(p).st_mtime_ns for p in seed1]
    capsys.readouterr()
    rows = benchmark.main(argv)
    printed = capsys.readouterr().out
    assert "[1/4] deepfm seed 1 ..." in printed and "[4/4] autoint seed 2 ..." in printed
    assert printed.count("already done, skipped") == 2
    assert [os.stat(p).st_mtime_ns for p in seed1] == seed1_mtimes

    assert [r["variant"] for r in rows] == ["deepfm", "autoint"]  # suite order
    metrics_files = []
    for name in ("deepfm", "autoint"):
        for seed in (1, 2):
            run = tiny_baseline_suite.run_dir(name, seed)
            with open(os.path.join(run, "metrics.json")) as fh:
                assert json.load(fh)["model"] == name
            with open(os.path.join(run, "config.json")) as fh:
                assert json.load(fh)["train"]["seed"] == seed
            assert not os.path.exists(os.path.join(run, "export"))
            assert not os.path.exists(os.path.join(run, "logs", "attention"))
            metrics_files.append(os.path.join(run, "metrics.json"))

    with open(os.path.join(out, "baselines.csv")) as fh:
        table = list(csv.DictReader(fh))
    assert [r["label"] for r in table] == ["DeepFM", "AutoInt"]
    for r in table:
        assert r["seeds"] == "2" and 0.0 <= float(r["auc_mean"]) <= 1.0
        assert float(r["auc_std"]) >= 0.0 and math.isfinite(float(r["captured_lift_mean"]))
        assert int(r["parameters"]) > 0
    with open(os.path.join(out, "baselines.md")) as fh:
        md = fh.read()
    assert "| DeepFM |" in md and "| AutoInt |" in md and "Captured lift" in md and " ± " in md
    with open(os.path.join(out, "baselines.png"), "rb") as fh:
        assert fh.read(4) == b"\x89PNG"

    mtimes = [os.stat(p).st_mtime_ns for p in metrics_files]
    again = benchmark.main(argv)
    assert capsys.readouterr().out.count("already done, skipped") == 4
    assert [os.stat(p).st_mtime_ns for p in metrics_files] == mtimes
    assert [r["auc_mean"] for r in again] == [r["auc_mean"] for r in rows]

    with pytest.raises(SystemExit, match="another configuration"):
        benchmark.main(argv + ["--set", "model.dropout=0.3"])


@pytest.mark.slow
def test_reference_rows_run_in_an_ablation_suite_and_a_rerun_fits_nothing(tmp_path, capsys):
    from tests.test_model_lr import prepare_click_log

    data = prepare_click_log(str(tmp_path / "clicks"))
    out = str(tmp_path / "bench")
    argv = ["--suite", "ablations", "--dataset", data, "--models", "gbdt,lr", "--seeds", "1",
            "--epochs", "1", "--batch-size", "256", "--output-dir", out]
    rows = benchmark.main(argv)
    assert [(r["variant"], r["label"]) for r in rows] == [
        ("lr", "Logistic regression"),
        ("gbdt", "GBDT yardstick"),
    ]
    gbdt_dir = os.path.join(out, "ablations", "gbdt", "seed1")
    with open(os.path.join(gbdt_dir, "metrics.json")) as fh:
        gbdt = json.load(fh)
    assert gbdt["model"] == "gbdt" and gbdt["config"]["seed"] == 1
    assert rows[1]["auc_mean"] == gbdt["test"]["auc"] and rows[1]["parameters"] is None
    assert math.isfinite(rows[1]["captured_lift_mean"]) and rows[0]["parameters"] > 0
    with open(os.path.join(out, "ablations", "lr", "seed1", "metrics.json")) as fh:
        assert json.load(fh)["model"] == "lr"
    with open(os.path.join(out, "ablations.md")) as fh:
        md = fh.read()
    assert "| Logistic regression |" in md and "| GBDT yardstick |" in md
    capsys.readouterr()
    mtime = os.stat(os.path.join(gbdt_dir, "metrics.json")).st_mtime_ns
    again = benchmark.main(argv)
    assert capsys.readouterr().out.count("already done, skipped") == 2
    assert os.stat(os.path.join(gbdt_dir, "metrics.json")).st_mtime_ns == mtime
    assert [r["auc_mean"] for r in again] == [r["auc_mean"] for r in rows]


@pytest.mark.slow
def test_first_seed_runs_only_the_later_seeds_and_a_full_run_reuses_them(tmp_path, capsys):
    from tests.test_model_lr import prepare_click_log

    data = prepare_click_log(str(tmp_path / "clicks"))
    out = str(tmp_path / "bench")
    argv = ["--suite", "baselines", "--dataset", data, "--models", "gbdt", "--output-dir", out]
    rows = benchmark.main(argv + ["--seeds", "3", "--first-seed", "2"])
    seed_dirs = sorted(os.listdir(os.path.join(out, "baselines", "gbdt")))
    assert seed_dirs == ["seed2", "seed3"] and rows[0]["seeds"] == 2
    with open(os.path.join(out, "baselines.md")) as fh:
        assert "(seeds 2-3)" in fh.read()
    capsys.readouterr()
    rows = benchmark.main(argv + ["--seeds", "3"])
    printed = capsys.readouterr().out
    assert "gbdt seed 1: done" in printed and printed.count("already done, skipped") == 2
    assert rows[0]["seeds"] == 3
    for bad in (["--seeds", "2", "--first-seed", "3"], ["--seeds", "2", "--first-seed", "0"]):
        with pytest.raises(SystemExit, match="--first-seed"):
            benchmark.main(argv + bad)
