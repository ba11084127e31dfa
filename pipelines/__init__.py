"""Raw data -> prepared datasets (TFRecord shards, vocabularies, dataset spec)."""

import feseq_tf  # noqa: F401  (`python -m pipelines.X`: TensorFlow's start-up noise dropped, feseq_tf.cli)
