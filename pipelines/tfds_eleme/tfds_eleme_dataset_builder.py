"""``feseq_eleme``: the Ele.me dataset as FESeq samples, for TensorFlow Datasets.

A manual-download builder: the raw files come from Tianchi (dataset 131047) and need an
account, so they are placed in the manual directory by hand. Preparation runs the
project's own Ele.me pipeline (:func:`pipelines.eleme.prepare`, no second
implementation) and stores its in-memory tables as TFDS splits ``train``, ``valid``
and ``test``. Every example holds the features of ``docs/data_format.md`` (vocabulary
ids, scaled numbers, left-padded histories, ``times``/``times_list``, ``hist_len``,
``group_id``, ``label``). The vocabularies, ``dataset_spec.json`` and ``report.json``
are written to the ``feseq/`` folder of the prepared TFDS dataset, and the dataset spec
is also in the dataset info's metadata (``info.metadata["dataset_spec"]``).

TFDS serialises examples one at a time in Python, so this route is much slower than
``python -m pipelines.eleme`` on the full dataset; it exists for TFDS users.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from feseq_tf import schema
from pipelines import eleme, generic

_DESCRIPTION = """
Ele.me click logs (Tianchi dataset 131047) prepared as in the FESeq paper: a seeded
sample of the day files, rows with missing values or unknown codes dropped, each
impression with the user's previous impressions (up to max_len) as its history,
8:1:1 split by time, vocabularies with a minimum count from the training split
(id 0 padding, 1 out-of-vocabulary) and min-max scaled numeric fields.
"""

_CITATION = """
@article{liu2024feseq,
  title={FESeq: Feature Interaction-Enhanced Sequential Transformer for Click-Through Rate Prediction},
  author={Liu, Haozhe and others},
  year={2024}
}
"""

META_DIR = "feseq"


@dataclasses.dataclass(eq=False)
class ElemeConfig(tfds.core.BuilderConfig):
    """Options of :func:`pipelines.eleme.prepare`."""

    days: tuple[str, ...] = eleme.DEFAULT_DAYS
    sample_frac: float = 1 / 3
    max_len: int = 10
    min_count: int = 10
    seed: int = 2024
    time_unit: float = 1.0
    time_clip: int = 4000


def layout_spec(max_len: int) -> schema.DatasetSpec:
    """A dataset spec with Ele.me's fields (vocabulary sizes unknown before preparing)."""
    fields = tuple(
        schema.FieldSpec(name, role, typ, sequential=sequential)
        for name, role, typ, sequential in eleme.FIELD_LAYOUT
    )
    return schema.DatasetSpec(name=eleme.DATASET_NAME, fields=fields, max_len=max_len)


class Builder(tfds.core.GeneratorBasedBuilder):
    """Ele.me (Tianchi 131047) as FESeq samples."""

    name = "feseq_eleme"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        ElemeConfig(name="paper", description="The paper's setting: 1/3 of D1_0, D3_1, D5_0."),
        ElemeConfig(name="full", description="Every line of D1_0, D3_1, D5_0.", sample_frac=1.0),
    ]
    DEFAULT_CONFIG_NAME = "paper"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    The Ele.me data is Tianchi dataset 131047 ({eleme.TIANCHI_URL}); downloading it
    needs a (free) Tianchi account, so it cannot be fetched automatically. Download it,
    unpack the day files D1_0.csv, D3_1.csv and D5_0.csv (comma separated, no header, 39
    columns) and put them directly in the manual directory
    (`--manual_dir` of `tfds build`, or
    `tfds.download.DownloadConfig(manual_dir=...)`; by default
    `~/tensorflow_datasets/downloads/manual/`).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        import tensorflow as tf

        features = {}
        for name, feature in layout_spec(self.builder_config.max_len).tfrecord_features().items():
            dtype = np.int64 if feature.dtype == tf.int64 else np.float32
            features[name] = tfds.features.Tensor(shape=tuple(feature.shape), dtype=dtype)
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=None,
            disable_shuffling=True,
            homepage=eleme.TIANCHI_URL,
            citation=_CITATION,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        cfg = self.builder_config
        result = eleme.prepare(
            os.fspath(dl_manager.manual_dir),
            None,
            days=cfg.days,
            sample_frac=cfg.sample_frac,
            max_len=cfg.max_len,
            min_count=cfg.min_count,
            seed=cfg.seed,
            time_unit=cfg.time_unit,
            time_clip=cfg.time_clip,
        )
        generic.write_dataset(
            result, os.path.join(os.fspath(self.data_dir), META_DIR), records=False
        )
        self.info.metadata["dataset_spec"] = result.spec.to_dict()
        self.info.metadata["report"] = {
            k: result.report[k]
            for k in ("rows_read", "rows_dropped", "rows_kept", "samples", "ctr")
        }
        return {split: self._generate_examples(result.tables[split]) for split in schema.SPLITS}

    def _generate_examples(
        self, table: Mapping[str, np.ndarray]
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        names = list(self.info.features.keys())
        columns = [table[name] for name in names]
        for i in range(len(columns[0])):
            yield i, {name: col[i] for name, col in zip(names, columns, strict=True)}
