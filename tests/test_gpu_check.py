"""The GPU readiness check: its CPU dry run end to end, and how it reports failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import gpu_check

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRY_RUN_TIMEOUT_S = 1200  # generous: the dry run trains twice and compiles with XLA


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """``bash benchmarks/gpu_check.sh --cpu-dry-run`` once: (completed process, output dir)."""
    out = str(tmp_path_factory.mktemp("gpu_check_dry"))
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", os.path.join(REPO, "benchmarks", "gpu_check.sh"), "--cpu-dry-run",
         "--output-dir", out],
        capture_output=True, text=True, timeout=DRY_RUN_TIMEOUT_S, env=env, cwd=REPO,
    )
    return proc, out


@pytest.mark.slow
def test_cpu_dry_run_passes_every_step_but_the_gpu_ones(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    for step in ("train", "throughput", "parity"):
        assert any(ln.startswith(f"[PASS] {step}:") for ln in lines), (step, proc.stdout)
    for step in ("gpu", "budget"):
        assert any(ln.startswith(f"[SKIP] {step}:") for ln in lines), (step, proc.stdout)
    assert "0 FAIL" in lines[-1] and "all checks passed" in lines[-1]
    # XLA really in effect for the XLA run only, and its export exists.
    with open(os.path.join(out, "xla", "metrics.json")) as fh:
        xla = json.load(fh)
    with open(os.path.join(out, "no_xla", "metrics.json")) as fh:
        no_xla = json.load(fh)
    assert xla["jit_compile_effective"] is True and no_xla["jit_compile_effective"] is False
    assert os.path.isfile(os.path.join(xla["export_path"], "saved_model.pb"))


@pytest.mark.slow
def test_raw_test_requests_encode_back_to_the_test_records(dry_run):
    import tensorflow as tf

    from export import contract
    from export.raw_encoder import RawFeatureEncoder
    from feseq_tf.data import make_dataset
    from feseq_tf.schema import DatasetSpec

    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-4000:]
    run_dir = os.path.join(out, "xla")
    with open(os.path.join(run_dir, "metrics.json")) as fh:
        dataset_dir = json.load(fh)["dataset_dir"]
    spec = DatasetSpec.load(run_dir)
    requests = gpu_check.raw_test_requests(run_dir, dataset_dir, 10_000)
    signature = contract.serving_input_signature(spec)
    encoded = RawFeatureEncoder(spec, os.path.join(run_dir, "vocab"))(
        {name: tf.constant(requests[name], dtype=ts.dtype) for name, ts in signature.items()}
    )
    features, _ = next(iter(make_dataset(dataset_dir, "test", 10_000, spec=spec)))
    assert len(requests[spec.time_field]) == spec.split_sizes["test"]
    for name in spec.model_input_names():
        got, expected = encoded[name].numpy(), features[name].numpy()
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=name)


def _settings(tmp_path, dry_run: bool) -> gpu_check.Settings:
    return gpu_check.Settings(
        dry_run=dry_run, output_dir=str(tmp_path), data_dir=str(tmp_path / "data"),
        synthetic_rows=None, precision="off", throughput_batch_size=8, parity_rows=8,
        atol=1e-3, timeout_s=10,
    )


def _fail(settings, state):
    raise gpu_check.CheckFailed("it broke")


def test_a_failing_step_fails_the_run_and_skips_the_steps_that_need_it(
    tmp_path, monkeypatch, capsys
):
    calls = []

    def passing(name):
        def step(settings, state):
            calls.append(name)
            return "fine"

        return step

    monkeypatch.setattr(gpu_check, "STEPS", {
        "gpu": passing("gpu"), "train": _fail, "throughput": passing("throughput"),
        "parity": passing("parity"),
    })
    results = gpu_check.run_checks(_settings(tmp_path, dry_run=True))
    status = {r.name: r.status for r in results}
    assert status == {"gpu": "SKIP", "train": "FAIL", "throughput": "PASS", "parity": "SKIP",
                      "budget": "SKIP"}
    assert calls == ["throughput"]  # the dry run never checks the GPU; parity needs train
    assert "[FAIL] train: it broke" in capsys.readouterr().out
    assert gpu_check.summary(results).endswith("FAILED: train")


def test_without_a_gpu_the_gpu_run_stops_after_the_gpu_step(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(gpu_check, "STEPS", {
        "gpu": _fail, "train": lambda s, st: ran.append("train") or "",
        "throughput": lambda s, st: ran.append("throughput") or "",
    })
    results = gpu_check.run_checks(_settings(tmp_path, dry_run=False))
    assert [(r.name, r.status) for r in results[:3]] == [
        ("gpu", "FAIL"), ("train", "SKIP"), ("throughput", "SKIP")]
    assert ran == []


def test_an_unexpected_error_fails_its_step_with_its_message(tmp_path, monkeypatch):
    def broken(settings, state):
        raise FileNotFoundError("no metrics.json")

    monkeypatch.setattr(gpu_check, "STEPS", {"train": broken})
    (result, _budget) = gpu_check.run_checks(_settings(tmp_path, dry_run=True))
    assert (result.status, result.detail) == ("FAIL", "FileNotFoundError: no metrics.json")


def test_dry_run_trains_tiny_in_float32_and_gpu_run_in_float16(tmp_path):
    dry = gpu_check.settings_from_args(
        gpu_check.build_parser().parse_args(["--cpu-dry-run", "--output-dir", str(tmp_path)]))
    assert (dry.precision, dry.synthetic_rows) == ("off", gpu_check.DRY_RUN_ROWS)
    assert dry.data_dir == os.path.join(str(tmp_path), "data")
    argv = gpu_check.train_command(dry, "xla")
    assert argv[argv.index("--mixed-precision") + 1] == "off" and "--jit" in argv
    assert "model.embedding_dim=4" in argv and "--no-export" not in argv
    throughput = gpu_check.throughput_argv(dry)
    assert "model.embedding_dim=4" in throughput and "--set" in throughput  # the tiny model

    gpu = gpu_check.settings_from_args(gpu_check.build_parser().parse_args([]))
    assert (gpu.precision, gpu.synthetic_rows) == ("float16", None)
    argv = gpu_check.train_command(gpu, "no_xla")
    assert argv[argv.index("--mixed-precision") + 1] == "float16"
    assert "--no-jit" in argv and "--no-export" in argv and "--set" not in argv
    assert gpu_check.throughput_argv(gpu) == [
        "--variants", "mixed_float16:on", "mixed_float16:off", "--batch-size", "4096"]


@pytest.mark.parametrize("option, value", [
    ("--synthetic-rows", "0"), ("--parity-rows", "-3"), ("--atol", "nan"), ("--timeout-s", "x"),
])
def test_bad_options_are_rejected_naming_the_option(option, value, capsys):
    with pytest.raises(SystemExit) as err:
        gpu_check.build_parser().parse_args([option, value])
    assert err.value.code == 2
    assert option in capsys.readouterr().err
