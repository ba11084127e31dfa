"""Throughput, latency and quality benchmarks (run from the repository root)."""

import feseq_tf  # noqa: F401  (`python -m benchmarks.X`: TensorFlow's start-up noise dropped, feseq_tf.cli)
