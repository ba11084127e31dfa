"""TensorFlow Datasets builder for the Ele.me dataset prepared as FESeq samples.

Importing this package registers the builder ``feseq_eleme``::

    import tensorflow_datasets as tfds
    import pipelines.tfds_eleme  # registers the builder

    builder = tfds.builder("feseq_eleme")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir="RAW_DIR"))
    ds = builder.as_dataset(split="train")

or, from the repository root, ``tfds build pipelines/tfds_eleme --manual_dir RAW_DIR``.
"""

from pipelines.tfds_eleme.tfds_eleme_dataset_builder import Builder, ElemeConfig

__all__ = ["Builder", "ElemeConfig"]
