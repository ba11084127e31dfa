"""The model and the request rows of the serving benchmark: an untrained FESeq of the
paper's Ele.me configuration (or a tiny one) exported to a directory, and random raw
rows of an exported model's request contract."""

from __future__ import annotations

import json
import os
from typing import Any

# --model-size: the paper's Ele.me configuration, or a model too small to cost anything,
# whose figures are those of the server itself (HTTP, JSON, batching, raw-feature encoder).
MODEL_SIZES = {
    "paper": {},
    "tiny": dict(
        embedding_dim=4,
        input_interaction_layers=1,
        target_interaction_layers=1,
        transformer_heads=2,
        pooling_hidden=8,
        mlp_units=[16],
    ),
}


def eleme_shaped_export(
    directory: str, precision: str = "float32", vocab_rows: int = 2000, size: str = "paper"
) -> str:
    """Export an untrained FESeq (``MODEL_SIZES[size]``) over an Ele.me-shaped spec; its
    base path."""
    import keras

    from benchmarks.train_throughput import eleme_shaped_spec
    from export.savedmodel import write_saved_model
    from feseq_tf.config import ModelConfig
    from feseq_tf.models.feseq import FESeq
    from feseq_tf.schema import DatasetSpec, FieldSpec, write_vocab

    shaped = eleme_shaped_spec()
    vocab_dir = os.path.join(directory, "run")
    fields = []
    for f in shaped.fields:
        if f.is_categorical:
            n = min(f.vocab_size - 2, vocab_rows)
            write_vocab(vocab_dir, f.name, [f"{f.name[:3]}{i}" for i in range(n)])
            fields.append(FieldSpec(f.name, f.role, f.type, f.sequential, vocab_size=n + 2))
        else:
            fields.append(FieldSpec(f.name, f.role, f.type, f.sequential, min=0.0, max=100.0))
    spec = DatasetSpec(name="eleme_shape", fields=tuple(fields), max_len=shaped.max_len)
    keras.utils.set_random_seed(0)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        model = FESeq(spec, ModelConfig(**MODEL_SIZES[size]), name="feseq")
    finally:
        keras.config.set_dtype_policy(previous)
    base = os.path.join(directory, "export", "feseq")
    write_saved_model(model, spec, os.path.join(vocab_dir, "vocab"), os.path.join(base, "1"))
    spec.save(os.path.join(base, "1", "assets.extra"))
    return base


def request_rows(version_dir: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Random raw rows for the exported model (histories '^'-joined)."""
    from export.savedmodel import CONTRACT_FILE, example_rows, to_request_row
    from feseq_tf.schema import DatasetSpec

    with open(os.path.join(version_dir, CONTRACT_FILE)) as fh:
        contract = json.load(fh)
    spec_path = os.path.join(version_dir, "assets.extra", "dataset_spec.json")
    if os.path.exists(spec_path):
        spec = DatasetSpec.load(spec_path)
    else:  # rebuild the field list from the contract: enough for random rows
        from feseq_tf.schema import FieldSpec

        names = {i["name"]: i for i in contract["inputs"]}
        fields = []
        for name, info in names.items():
            if info["kind"] in ("categorical", "numeric"):
                sequential = f"{name}_list" in names
                role = "item" if sequential else "user"
                fields.append(FieldSpec(name, role, info["kind"], sequential, vocab_size=2))
        spec = DatasetSpec(name="contract", fields=tuple(fields), max_len=contract["max_len"])
    vocabs = _vocabularies(version_dir)
    rows = example_rows(spec, vocabs, n, seed=seed)
    return [to_request_row(spec, r) for r in rows]


def _vocabularies(version_dir: str) -> dict[str, list[str]]:
    from export.raw_encoder import KEY_SEPARATOR, VOCABULARY_ASSET

    vocabs: dict[str, list[str]] = {}
    path = os.path.join(version_dir, "assets", VOCABULARY_ASSET)
    if os.path.exists(path):
        with open(path, encoding="utf-8", newline="\n") as fh:
            for line in fh:
                field, _, value = line.rstrip("\n").partition(KEY_SEPARATOR)
                vocabs.setdefault(field, []).append(value)
    return vocabs
