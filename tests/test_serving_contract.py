"""The serving contract files: TF Serving config, batching parameters, README commands."""

from __future__ import annotations

import os
import re

from export.contract import ATTENTION_SIGNATURE, DEFAULT_MODEL_NAME, SERVING_SIGNATURE

SERVING_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "export", "serving"
)


def _read(name: str) -> str:
    with open(os.path.join(SERVING_DIR, name)) as fh:
        return fh.read()


def _text_proto_fields(text: str) -> dict[str, list[str]]:
    """``key: value`` pairs of a text proto (comments dropped)."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.match(r"^(\w+)\s*:\s*(.+)$", line)
        if match:
            fields.setdefault(match[1], []).append(match[2].strip().strip('"'))
    return fields


def _balanced(text: str) -> bool:
    stripped = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    depth = 0
    for ch in stripped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_models_config_serves_the_exported_model_name_from_its_base_path():
    text = _read("models.config")
    assert _balanced(text) and "model_config_list" in text
    fields = _text_proto_fields(text)
    assert fields["name"] == [DEFAULT_MODEL_NAME]
    assert fields["base_path"] == [f"/models/{DEFAULT_MODEL_NAME}"]
    assert fields["model_platform"] == ["tensorflow"]


def test_batching_parameters_are_a_valid_text_proto():
    text = _read("batching_parameters.txt")
    assert _balanced(text)
    keys = re.findall(r"^(\w+)\s*\{\s*value:\s*\d+\s*\}", text, flags=re.M)
    assert set(keys) == {
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
    }


def test_readme_gives_the_exact_server_commands_and_the_api():
    text = _read("README.md")
    assert "docker run" in text and "tensorflow/serving" in text
    assert "-p 8501:8501" in text and "-e MODEL_NAME=feseq" in text
    assert "--model_config_file=/config/models.config" in text
    assert "--batching_parameters_file=/config/batching_parameters.txt" in text
    assert "tensorflow_model_server --port=8500 --rest_api_port=8501" in text
    assert "python -m export.serve --model-base-path exported/feseq" in text
    assert "python -m export.client --url http://localhost:8501 --model feseq rows.jsonl" in text
    assert "/v1/models/feseq:predict" in text and '"instances"' in text and '"inputs"' in text
    assert SERVING_SIGNATURE in text and ATTENTION_SIGNATURE in text
    assert "Production serves the model with" in text
