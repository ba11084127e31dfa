"""A prepared dataset opened once: its directory, spec, split files and split sizes.

A training run opens its dataset directory once with :meth:`PreparedDataset.open`
(``dataset_spec.json`` read, each split's TFRecord shards listed) and hands the object to
everything that reads the data: the ``"auto"`` id dropout rates, the input pipeline,
validation and early stopping, the test evaluation and the attention summaries. The
functions that take a prepared dataset accept either the object or its directory (a
string is opened once, where the call enters, by :func:`as_prepared`).

Example (:func:`feseq_tf.data.make_dataset`):

>>> dataset = PreparedDataset.open("data/synthetic")
>>> dataset.spec.name, sorted(dataset.sizes)
('synthetic', ['test', 'train', 'valid'])
>>> batches = make_dataset(dataset, "train", 4096, training=True, seed=0)
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Mapping

from feseq_tf.schema import SPEC_FILE, SPLITS, DatasetSpec


def list_split_files(directory: str, split: str, *, required: bool = False) -> tuple[str, ...]:
    """Sorted TFRecord shard paths of one split of a prepared dataset directory.

    Args:
        directory: str. A prepared dataset directory.
        split: str. ``"train"``, ``"valid"`` or ``"test"``.
        required: bool. Raise when the split has no shards. Defaults to False.

    Returns:
        The ``<directory>/<split>/*.tfrecord`` paths, sorted; empty when there are none
        (and not ``required``).

    Raises:
        ValueError: ``split`` is not one of the splits.
        FileNotFoundError: ``required`` and the split has no shards.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    files = tuple(sorted(glob.glob(os.path.join(directory, split, "*.tfrecord"))))
    if required and not files:
        raise _no_shards(directory, split)
    return files


def _no_shards(directory: str, split: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"No TFRecord shards for split {split!r} under {directory!r}: prepare the dataset first."
    )


@dataclasses.dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset directory, read once: its spec and each split's shard files.

    Make it with :meth:`open`; the fields are read-only.

    Args:
        directory: str. The prepared dataset directory (as given to :meth:`open`).
        spec: DatasetSpec. Its ``dataset_spec.json``.
        files: dict. Per split (``"train"``, ``"valid"``, ``"test"``), the sorted TFRecord
            shard paths (an empty tuple for a split without shards).
    """

    directory: str
    spec: DatasetSpec
    files: Mapping[str, tuple[str, ...]]

    @classmethod
    def open(cls, directory: str | os.PathLike) -> PreparedDataset:
        """Read ``dataset_spec.json`` and list the shards of every split, once.

        Args:
            directory: str or path. A prepared dataset directory (see docs/data_format.md).

        Returns:
            The opened dataset.

        Raises:
            FileNotFoundError: ``directory`` holds no ``dataset_spec.json``.
            ValueError: the spec is not a valid dataset spec (the message names the file).
        """
        directory = os.fspath(directory)
        if not os.path.isfile(os.path.join(directory, SPEC_FILE)):
            raise FileNotFoundError(
                f"{directory} is not a prepared dataset directory (no {SPEC_FILE})."
            )
        spec = DatasetSpec.load(directory)
        files = {split: list_split_files(directory, split) for split in SPLITS}
        return cls(directory=directory, spec=spec, files=files)

    @property
    def sizes(self) -> dict[str, int]:
        """Examples per split as the spec records them (splits it does not record are absent)."""
        return {split: int(n) for split, n in self.spec.split_sizes.items() if n}

    def split_files(self, split: str) -> list[str]:
        """The sorted TFRecord shard paths of one split.

        Args:
            split: str. ``"train"``, ``"valid"`` or ``"test"``.

        Returns:
            The paths (at least one).

        Raises:
            ValueError: ``split`` is not one of the splits.
            FileNotFoundError: the split has no shards.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
        files = self.files.get(split, ())
        if not files:
            raise _no_shards(self.directory, split)
        return list(files)

    def examples(self, split: str) -> int:
        """Examples of a split: from the spec when it records them, else counted once.

        Args:
            split: str. ``"train"``, ``"valid"`` or ``"test"``.

        Returns:
            The number of examples.

        Raises:
            ValueError: ``split`` is not one of the splits.
            FileNotFoundError: the split size is not recorded and the split has no shards.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
        n = self.sizes.get(split)
        if n:
            return n
        import tensorflow as tf

        ds = tf.data.TFRecordDataset(self.split_files(split))
        return int(ds.reduce(tf.constant(0, tf.int64), lambda c, _: c + 1).numpy())


def as_prepared(dataset: str | os.PathLike | PreparedDataset) -> PreparedDataset:
    """The opened dataset: ``dataset`` itself, or its directory opened once.

    Args:
        dataset: PreparedDataset, or a prepared dataset directory (str or path).

    Returns:
        A :class:`PreparedDataset`.

    Raises:
        TypeError: ``dataset`` is neither.
        FileNotFoundError: the directory holds no ``dataset_spec.json``.
    """
    if isinstance(dataset, PreparedDataset):
        return dataset
    if isinstance(dataset, (str, os.PathLike)):
        return PreparedDataset.open(dataset)
    raise TypeError(
        f"dataset must be a PreparedDataset or a prepared dataset directory, got {dataset!r}."
    )
