"""SavedModel export: versioned atomic directories, signatures, session-based loading."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from export import savedmodel
from feseq_tf.schema import DatasetSpec, read_vocab


def _saved_model_cli() -> list[str]:
    """The ``saved_model_cli`` installed with TensorFlow (as a module if not on PATH)."""
    beside = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if os.path.exists(beside):
        return [beside]
    found = shutil.which("saved_model_cli")
    return [found] if found else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def _example_rows(run_dir: str, n: int, seed: int = 0) -> tuple[DatasetSpec, list[dict]]:
    spec = DatasetSpec.load(run_dir)
    vocabs = {f.name: read_vocab(run_dir, f.name) for f in spec.fields if f.is_categorical}
    rows = [
        savedmodel.to_request_row(spec, r)
        for r in savedmodel.example_rows(spec, vocabs, n, seed=seed)
    ]
    return spec, rows


def _tensors(spec: DatasetSpec, rows: list[dict]) -> dict[str, np.ndarray]:
    out = {}
    for name, ts in savedmodel.serving_input_signature(spec).items():
        values = [r[name] for r in rows]
        if ts.dtype == tf.string:
            out[name] = np.array([v.encode("utf-8") for v in values])
        else:
            out[name] = np.array(values, dtype=ts.dtype.as_numpy_dtype)
    return out


def test_export_run_writes_a_numbered_version_with_signatures_and_assets(tiny_exported_model):
    assert os.path.basename(tiny_exported_model) == "1"
    base = os.path.dirname(tiny_exported_model)
    assert sorted(os.listdir(base)) == ["1"]  # no temporary directory left behind
    assert os.path.exists(os.path.join(tiny_exported_model, "assets", savedmodel.VOCABULARY_ASSET))
    loaded = tf.saved_model.load(tiny_exported_model)
    assert set(loaded.signatures) == {"serving_default", "attention"}
    outputs = loaded.signatures["serving_default"].structured_outputs
    assert set(outputs) == {"probability"} and outputs["probability"].dtype == tf.float32
    with open(os.path.join(tiny_exported_model, savedmodel.CONTRACT_FILE)) as fh:
        contract = json.load(fh)
    assert contract["model_name"] == "feseq" and contract["history_separator"] == "^"
    assert len(contract["example_request"]["instances"]) == 2


@pytest.mark.slow
def test_saved_model_cli_show_lists_the_signatures(tiny_exported_model):
    result = subprocess.run(
        _saved_model_cli() + ["show", "--dir", tiny_exported_model, "--all"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    out = result.stdout
    assert "signature_def['serving_default']" in out
    assert "signature_def['attention']" in out
    assert "outputs['probability']" in out and "outputs['pooling_attention']" in out
    assert "inputs['shop_id_list']" in out and "DT_STRING" in out
    assert "Method name is: tensorflow/serving/predict" in out


@pytest.mark.slow
@pytest.mark.parametrize("signature", ["serving_default", "attention"])
def test_saved_model_cli_run_matches_tf_saved_model_load(
    tiny_trained_run, tiny_exported_model, tmp_path, signature
):
    """``saved_model_cli run`` loads the model into a v1 session, as TF Serving does."""
    spec, rows = _example_rows(tiny_trained_run.run_dir, 5, seed=3)
    tensors = _tensors(spec, rows)
    np.savez(tmp_path / "inputs.npz", **tensors)
    npz = tmp_path / "inputs.npz"
    inputs = ";".join(f"{name}={npz}[{name}]" for name in tensors)
    outdir = tmp_path / "out"
    subprocess.run(
        _saved_model_cli()
        + [
            "run",
            "--dir",
            tiny_exported_model,
            "--tag_set",
            "serve",
            "--signature_def",
            signature,
            "--inputs",
            inputs,
            "--outdir",
            str(outdir),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    loaded = tf.saved_model.load(tiny_exported_model)
    expected = loaded.signatures[signature](**{k: tf.constant(v) for k, v in tensors.items()})
    for name, value in expected.items():
        got = np.load(outdir / f"{name}.npy")
        np.testing.assert_allclose(got, value.numpy(), rtol=0, atol=1e-6, err_msg=name)
    assert np.load(outdir / "probability.npy").shape == (5,)


@pytest.mark.slow
def test_cli_exports_the_next_version_and_refuses_an_existing_one(
    tiny_trained_run, tmp_path, capsys
):
    export_dir = str(tmp_path / "models")
    os.makedirs(os.path.join(export_dir, "feseq", "3"))  # an earlier version
    assert savedmodel.main(["--model", tiny_trained_run.run_dir, "--export-dir", export_dir]) == 0
    assert "feseq/4" in capsys.readouterr().out.replace(os.sep, "/")
    assert sorted(os.listdir(os.path.join(export_dir, "feseq"))) == ["3", "4"]
    code = savedmodel.main(
        ["--model", tiny_trained_run.run_dir, "--export-dir", export_dir, "--version", "4"]
    )
    assert code == 2 and "already exists" in capsys.readouterr().err


def test_a_failed_export_leaves_no_version_behind(tiny_trained_run, tmp_path, monkeypatch):
    def fail_half_way(model, spec, vocab_dir, path, **kwargs):
        with open(os.path.join(path, "saved_model.pb"), "wb") as fh:
            fh.write(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(savedmodel, "write_saved_model", fail_half_way)
    with pytest.raises(RuntimeError, match="disk full"):
        savedmodel.export_run(tiny_trained_run.run_dir, str(tmp_path), version=7)
    assert os.listdir(tmp_path / "feseq") == []


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"version": 0}, ValueError, "version must be an integer >= 1"),
        ({"version": True}, ValueError, "version must be an integer >= 1"),
        ({"name": "../evil"}, ValueError, "name must be"),
        ({"name": ""}, ValueError, "name must be"),
    ],
)
def test_export_run_validates_its_arguments(tiny_trained_run, tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        savedmodel.export_run(tiny_trained_run.run_dir, str(tmp_path), **kwargs)


def test_export_run_explains_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="training run directory"):
        savedmodel.export_run(str(tmp_path), str(tmp_path / "out"))


@pytest.mark.slow
def test_exported_model_is_self_contained(tiny_trained_run, tmp_path):
    """The vocabularies travel inside the SavedModel: the run may be deleted."""
    run_copy = str(tmp_path / "run")
    shutil.copytree(
        tiny_trained_run.run_dir, run_copy, ignore=shutil.ignore_patterns("logs", "*.h5")
    )
    spec, rows = _example_rows(run_copy, 4, seed=5)
    model, _ = savedmodel.load_run(run_copy)
    path = str(tmp_path / "sm")
    savedmodel.write_saved_model(model, spec, os.path.join(run_copy, "vocab"), path)
    encoder = savedmodel.RawFeatureEncoder(spec, os.path.join(run_copy, "vocab"))
    expected = model(
        encoder({k: tf.constant(v) for k, v in _tensors(spec, rows).items()}), training=False
    )
    shutil.rmtree(run_copy)
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["serving_default"](
        **{k: tf.constant(v) for k, v in _tensors(spec, rows).items()}
    )
    np.testing.assert_allclose(got["probability"].numpy(), expected.numpy().reshape(-1), atol=1e-6)


def test_vocabulary_that_disagrees_with_the_spec_is_refused(tiny_trained_run, tmp_path):
    vocab = str(tmp_path / "vocab")
    shutil.copytree(os.path.join(tiny_trained_run.run_dir, "vocab"), vocab)
    with open(os.path.join(vocab, "gender.txt"), "a") as fh:
        fh.write("extra\n")
    spec = DatasetSpec.load(tiny_trained_run.run_dir)
    with pytest.raises(ValueError, match="gender"):
        savedmodel.RawFeatureEncoder(spec, vocab)


@pytest.mark.slow
def test_mixed_bfloat16_model_exports_float32_probabilities(tiny_trained_run, tmp_path):
    import keras

    from feseq_tf.config import ModelConfig
    from feseq_tf.models.feseq import FESeq

    spec, rows = _example_rows(tiny_trained_run.run_dir, 6, seed=9)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = FESeq(
            spec, ModelConfig(embedding_dim=4, mlp_units=[8], pooling_hidden=8, transformer_heads=2)
        )
    finally:
        keras.config.set_dtype_policy(previous)
    path = str(tmp_path / "bf16")
    savedmodel.write_saved_model(model, spec, os.path.join(tiny_trained_run.run_dir, "vocab"), path)
    tensors = {k: tf.constant(v) for k, v in _tensors(spec, rows).items()}
    out = tf.saved_model.load(path).signatures["attention"](**tensors)
    assert out["probability"].dtype == tf.float32 and out["pooling_attention"].dtype == tf.float32
    encoder = savedmodel.RawFeatureEncoder(spec, os.path.join(tiny_trained_run.run_dir, "vocab"))
    expected = model(encoder(tensors), training=False).numpy().reshape(-1)
    np.testing.assert_allclose(out["probability"].numpy(), expected, atol=1e-5)
