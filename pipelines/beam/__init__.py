"""The dataset pipeline on Apache Beam: the generic pipeline's output from logs larger
than one machine (DirectRunner locally; Dataflow, Flink or Spark unchanged).

``python -m pipelines.beam --input GLOB --spec SPEC.yaml --out DIR [--runner ...]``
(:mod:`pipelines.beam.cli`); in Python, :func:`pipelines.beam.pipeline.run`. Needs the
``beam`` extra (``pip install 'feseq-tf[beam]'``); importing this package does not.
"""
