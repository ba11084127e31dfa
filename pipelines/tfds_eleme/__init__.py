"""TensorFlow Datasets builder for the Ele.me dataset prepared as FESeq samples.

Importing this package registers the builder ``feseq_eleme``::

    import tensorflow_datasets as tfds
    import pipelines.tfds_eleme  # registers the builder

    builder = tfds.builder("feseq_eleme")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir="RAW_DIR"))
    ds = builder.as_dataset(split="train")

Configs: ``paper`` (default: 1/3 of each day file, as in the paper) and ``full``; any
option of :func:`pipelines.eleme.prepare` can be set through
``ElemeConfig(name=..., sample_frac=..., max_len=..., min_count=...)`` passed as
``Builder(config=...)``.
"""

from pipelines.tfds_eleme.tfds_eleme_dataset_builder import Builder, ElemeConfig

__all__ = ["Builder", "ElemeConfig"]
