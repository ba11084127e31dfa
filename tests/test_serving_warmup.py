"""TF Serving's warm-up requests: what the export writes and what the development server replays."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from export import devserver, warmup
from export.contract import serving_input_signature
from feseq_tf.schema import DatasetSpec, read_vocab


def _records(version_dir: str) -> list[prediction_log_pb2.PredictionLog]:
    """The warm-up file parsed with TensorFlow's own TFRecord reader, as TF Serving reads it."""
    path = os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests")
    return [
        prediction_log_pb2.PredictionLog.FromString(r)
        for r in tf.data.TFRecordDataset(path).as_numpy_iterator()
    ]


@pytest.fixture(scope="module")
def signature(tiny_exported_model):
    return tf.saved_model.load(tiny_exported_model).signatures["serving_default"]


def test_warmup_file_holds_predict_logs_of_one_and_typical_batch_sizes(tiny_exported_model):
    records = _records(tiny_exported_model)
    assert [r.WhichOneof("log_type") for r in records] == ["predict_log"] * 3
    requests = [r.predict_log.request for r in records]
    assert [(q.model_spec.name, q.model_spec.signature_name) for q in requests] == [
        ("feseq", "serving_default")
    ] * 3
    rows = [{p.tensor_shape.dim[0].size for p in q.inputs.values()} for q in requests]
    assert rows == [{1}, {8}, {64}]


def test_warmup_inputs_have_the_signatures_names_dtypes_and_shapes(tiny_exported_model, signature):
    _, specs = signature.structured_input_signature
    for record in _records(tiny_exported_model):
        inputs = record.predict_log.request.inputs
        assert sorted(inputs) == sorted(specs)
        for name, proto in inputs.items():
            assert proto.dtype == specs[name].dtype.as_datatype_enum, name
            shape = tf.TensorShape([d.size for d in proto.tensor_shape.dim])
            assert specs[name].shape.is_compatible_with(shape), (name, shape)


def test_warmup_requests_replay_through_the_saved_model_to_probabilities(
    tiny_exported_model, signature
):
    _, specs = signature.structured_input_signature
    for record in _records(tiny_exported_model):
        inputs = record.predict_log.request.inputs
        rows = inputs["times"].tensor_shape.dim[0].size
        tensors = {
            n: tf.constant(tf.make_ndarray(p), dtype=specs[n].dtype) for n, p in inputs.items()
        }
        probability = signature(**tensors)["probability"].numpy()
        assert probability.shape == (rows,)
        assert np.all(np.isfinite(probability))
        assert np.all((probability >= 0) & (probability <= 1))


def test_warmup_rows_come_from_the_vocabularies(tiny_trained_run):
    spec = DatasetSpec.load(tiny_trained_run.run_dir)
    vocabs = {
        f.name: read_vocab(tiny_trained_run.run_dir, f.name)
        for f in spec.fields
        if f.is_categorical
    }
    (log,) = warmup.warmup_logs(spec, vocabs, model_name="ctr", batch_sizes=[32])
    request = log.predict_log.request
    assert request.model_spec.name == "ctr"
    shops = [v.decode() for v in tf.make_ndarray(request.inputs["shop_id"])]
    assert len(shops) == 32
    # example_rows leaves about a tenth of the values unseen; most are known shops.
    assert sum(s in set(vocabs["shop_id"]) for s in shops) >= 16
    assert set(request.inputs) == set(serving_input_signature(spec))


@pytest.mark.parametrize("sizes", [[], [0], [1, -8]])
def test_warmup_logs_refuse_bad_batch_sizes(tiny_trained_run, sizes):
    spec = DatasetSpec.load(tiny_trained_run.run_dir)
    with pytest.raises(ValueError, match="batch_sizes"):
        warmup.warmup_logs(spec, {}, batch_sizes=sizes)


def test_dev_server_replays_the_warmup_before_serving(tiny_exported_model, caplog):
    caplog.set_level(logging.INFO, logger="export.devserver")
    base = os.path.dirname(tiny_exported_model)
    with devserver.BackgroundServer(base, "feseq", poll_wait_s=0) as server:
        servable = server.model_server.models["feseq"]
        assert servable.warmup_requests == 3
        assert servable.warmup_seconds > 0
    assert "model 'feseq' version 1: ran 3 warm-up requests (1, 8, 64 rows)" in caplog.text


def test_a_failing_warmup_request_fails_the_load(tiny_exported_model, tmp_path):
    version_dir = str(tmp_path / "feseq" / "1")
    shutil.copytree(tiny_exported_model, version_dir)
    (log,) = _records(tiny_exported_model)[:1]
    inputs = log.predict_log.request.inputs
    inputs["times"].CopyFrom(tf.make_tensor_proto([1.5], dtype=tf.float64))
    warmup.write_warmup_file(version_dir, [log])
    with pytest.raises(ValueError, match="Warm-up record 0 of version 1.*'times' is float64"):
        devserver.ServableVersion("feseq", 1, version_dir)
