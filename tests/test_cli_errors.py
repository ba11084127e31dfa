"""Every command line ends a user's mistake with one line ``error: ...`` and a non-zero exit.

Each case runs ``python -m MODULE ARGS`` as a subprocess (from the repository root, so
that ``benchmarks`` is importable) and checks: exit status != 0, the last line of standard
error starts with ``error:`` and names the problem, no traceback, and no TensorFlow C++
log line (:mod:`feseq_tf.tf_logging` filters them; :mod:`feseq_tf.cli` formats the error).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from feseq_tf.tf_logging import CPP_LOG_LINE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SPEC = """\
name: tiny
user_key: user
timestamp: ts
label: label
non_sequential_fields: [{name: user}, {name: x, type: numeric}]
sequential_fields: [{name: item}]
max_len: 2
min_count: 1
"""

# (module, arguments, a fragment the error line must hold). {d} is a directory of inputs.
CASES = [
    # pipelines: bad spec, files and data
    ("pipelines.generic", "--input {d}/no_x.csv --spec {d}/spec.yaml --out {d}/o",
     "lacks the columns ['x']"),
    ("pipelines.generic", "--input {d}/missing.csv --spec {d}/spec.yaml --out {d}/o",
     "missing.csv does not exist"),
    ("pipelines.generic", "--input {d}/header_only.csv --spec {d}/spec.yaml --out {d}/o",
     "header_only.csv has no rows"),
    ("pipelines.generic", "--input {d}/zero.csv --spec {d}/spec.yaml --out {d}/o",
     "zero.csv is empty"),
    ("pipelines.generic", "--input {d}/one_user.csv --spec {d}/spec.yaml --out {d}/o",
     "split 'valid' of dataset 'tiny' is empty"),
    ("pipelines.generic", "--input {d}/ok.csv --spec {d}/unknown_key.yaml --out {d}/o",
     "Unknown keys in pipeline spec: ['bogus']"),
    ("pipelines.generic", "--input {d}/ok.csv", "the following arguments are required: --spec"),
    ("pipelines.generic", "--input {d}/ok.csv --spec {d}/spec.yaml --out {d}/o2 --extend {d}",
     "No dataset spec at"),
    ("pipelines.synthetic", "--out {d}/o --regime densest", "invalid choice: 'densest'"),
    ("pipelines.eleme", "--raw-dir {d}/none --out {d}/o", "Ele.me raw files not found"),
    ("pipelines.bundle", "--input {d}/missing.csv --out {d}/o", "missing.csv' does not exist"),
    ("pipelines.movielens", "--raw-dir {d}/none --out {d}/o", "MovieLens 100K files not found"),
    ("pipelines.beam", "--input {d}/missing.csv --spec {d}/spec.yaml --out {d}/o",
     "matches no file"),
    # export
    ("export.savedmodel", "--model {d}/none --export-dir {d}/e", "model.keras does not exist"),
    ("export.client", "{d}/missing.jsonl --url http://127.0.0.1:9",
     "No such file or directory"),
    ("export.devserver", "--model-base-path {d}/none", "does not exist"),
    # feseq_tf
    ("feseq_tf.train", "--dataset {d}/none", "neither one of"),
    ("feseq_tf.train", "--set bogus --data-dir {d}/data", "--set expects SECTION.KEY=VALUE"),
    ("feseq_tf.train", "--dataset {d}/bad_spec", "dataset_spec.json is not valid JSON"),
    ("feseq_tf.evaluate", "--model {d}/none --dataset {d}/none",
     "is not a prepared dataset directory"),
    ("feseq_tf.evaluate", "--model {d}/none --dataset {d}/none --split bogus",
     "invalid choice: 'bogus'"),
    ("feseq_tf.benchmark", "--suite ablations --seeds 0", "--seeds must be >= 1"),
    ("feseq_tf.tune", "--dataset {d}/none --trials 0", "--trials must be a positive integer"),
    ("feseq_tf.tensorboard_plugin", "--bogus", "unrecognized arguments: --bogus"),
    ("feseq_tf.plots", "--logdir {d}/none --out {d}/p", "No log directory"),
    # benchmarks
    ("benchmarks.reference_gbdt", "--dataset {d}/none", "No prepared dataset"),
    ("benchmarks.serving", "--rate 0", "--rate > 0"),
    ("benchmarks.multi_worker", "--rows 5", "--rows >= 1000"),
    ("benchmarks.pipeline", "--rows -1", "--rows must be at least"),
    ("benchmarks.attention_findings", "--rows 5", "at least 1,000 rows"),
    ("benchmarks.continual", "--log ml100k-weeks --output-dir {d}/c", "needs --raw-dir"),
    ("benchmarks.train_throughput", "--bogus",
     "unrecognized arguments: --bogus (see python -m benchmarks.train_throughput --help)"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Spec files, CSV files and directories the cases name."""
    d = tmp_path_factory.mktemp("cli_errors")
    (d / "spec.yaml").write_text(SPEC)
    (d / "unknown_key.yaml").write_text(SPEC + "bogus: 1\n")
    rows = {"user": list("abaabaacba"), "ts": [30, 10, 10, 20, 20, 20, 40, 40, 50, 60],
            "item": [f"i{i % 4}" for i in range(10)], "x": [float(i) for i in range(10)],
            "label": [1, 0, 0, 1, 0, 0, 1, 0, 1, 1]}
    pd.DataFrame(rows).to_csv(d / "ok.csv", index=False)
    pd.DataFrame(rows).drop(columns="x").to_csv(d / "no_x.csv", index=False)
    pd.DataFrame({k: v[:3] for k, v in rows.items()} | {"user": ["a"] * 3}).to_csv(
        d / "one_user.csv", index=False)
    (d / "header_only.csv").write_text("user,ts,item,x,label\n")
    (d / "zero.csv").write_text("")
    (d / "bad_spec").mkdir()
    (d / "bad_spec" / "dataset_spec.json").write_text("{")
    return str(d)


def _run(module: str, args: str, d: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "FESEQ_TF_DEBUG")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # a GPU machine takes the CPU path, as CI does
    return subprocess.run([sys.executable, "-m", module, *args.format(d=d).split()],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


# The cases whose command takes longest to fail (it loads TensorFlow and more before the
# check) run in the full suite only; those modules keep other tests in the fast tier.
SLOW_CASES = {
    ("export.savedmodel", "--model"), ("export.devserver", "--model-base-path"),
    ("feseq_tf.train", "--dataset"), ("feseq_tf.benchmark", "--suite"),
    ("feseq_tf.tune", "--dataset"),
}


@pytest.mark.parametrize(("module", "args", "fragment"), [
    pytest.param(m, a, f, id=f"{m}:{a.split()[0]}-{i}",
                 marks=[pytest.mark.slow] if (m, a.split()[0]) in SLOW_CASES else [])
    for i, (m, a, f) in enumerate(CASES)
])
def test_bad_input_ends_with_one_error_line(inputs, module, args, fragment):
    out = _run(module, args, inputs)
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0, out.stderr
    assert lines and lines[-1].startswith("error: "), out.stderr
    assert fragment in lines[-1], out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    cpp = [line for line in lines if CPP_LOG_LINE.match(line) or "absl::InitializeLog" in line]
    assert not cpp, out.stderr


def test_debug_keeps_the_traceback(inputs):
    out = _run("pipelines.generic",
               "--input {d}/no_x.csv --spec {d}/spec.yaml --out {d}/o --debug", inputs)
    assert out.returncode != 0
    assert "Traceback" in out.stderr and re.search(r"ValueError: .*lacks the columns", out.stderr)


def test_a_bug_keeps_its_traceback():
    from feseq_tf import cli

    @cli.command
    def main(argv=None):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        main([])


def test_a_user_error_is_one_line_in_process():
    from feseq_tf import cli

    @cli.command
    def main(argv=None):
        raise ValueError("--rows must be >= 1,\n  got 0.")

    with pytest.raises(SystemExit, match=r"^error: --rows must be >= 1, got 0\.$"):
        main([])
