"""Prepared synthetic datasets: the Ele.me pipeline run on generated raw files.

:func:`make_synthetic_dataset` generates the raw files into ``<out_dir>/raw`` and
prepares them into ``out_dir``; :func:`prepare` does the second step alone.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from pipelines.synthetic.raw import generate, read_generator_info
from pipelines.synthetic.regimes import WORLD_KNOBS
from pipelines.synthetic.simulation import DEFAULT_MAX_LEN, DEFAULT_SEED

# Time intervals reach the model in hours (``times`` is in minutes): the refiner's time
# embedding has one row per whole unit, and at minute resolution its up to 4,000 rows
# are each seen too rarely in 200k samples to learn the generator's smooth decay; FESeq
# then does better without the time embedding at all (README, "Ablations").
TIME_UNIT_MINUTES = 60.0
DATASET_NAME = "synthetic"
RAW_SUBDIR = "raw"


def default_min_count(num_rows: int) -> int:
    """Vocabulary min count for a synthetic size: the paper's 10 from 100k rows up.

    Smaller datasets use ``max(1, num_rows // 10_000)`` so that a few hundred rows
    still give vocabularies with more than the OOV id.
    """
    if isinstance(num_rows, bool) or not isinstance(num_rows, (int, np.integer)) or num_rows < 1:
        raise ValueError(f"num_rows must be a positive integer, got {num_rows!r}.")
    return int(min(10, max(1, num_rows // 10_000)))


def prepare(
    raw_dir: str,
    out_dir: str | None,
    *,
    max_len: int | None = None,
    min_count: int | None = None,
    num_shards: int | None = None,
    progress: bool = True,
    time_unit: float = TIME_UNIT_MINUTES,
    feedback: bool = False,
) -> Any:
    """Run the Ele.me pipeline on synthetic raw files (all rows kept: ``sample_frac=1``).

    Args:
        raw_dir: str. Directory written by :func:`generate`.
        out_dir: str or None. Prepared dataset directory (None: only the tables).
        max_len: int. History length. Defaults to the generator's ``max_len``.
        min_count: int. Vocabulary min count. Defaults to :func:`default_min_count`
            of the generator's ``num_rows``.
        num_shards: int. TFRecord shards per split. Defaults to the pipeline's choice.
        progress: bool. Print progress. Defaults to True.
        time_unit: float. Minutes per time-interval unit recorded in the spec.
            Defaults to ``TIME_UNIT_MINUTES`` (60: intervals in hours).
        feedback: bool. Add the labels of the history (the field ``feedback``, see
            ``docs/data_format.md``). Defaults to False.

    Returns:
        The pipeline's ``PrepareResult``; its spec is named ``"synthetic"`` and its
        ``extra["generator"]`` holds the generator's parameters.
    """
    from pipelines import eleme

    info = read_generator_info(raw_dir)
    max_len = info["max_len"] if max_len is None else max_len
    min_count = default_min_count(info["num_rows"]) if min_count is None else min_count
    result = eleme.prepare(
        raw_dir, out_dir, days=tuple(info["days"]), sample_frac=1.0, max_len=max_len,
        min_count=min_count, seed=info["seed"], time_unit=time_unit, time_clip=4000,
        num_shards=num_shards, progress=progress, name=DATASET_NAME, feedback=feedback,
    )
    # Record the generator in the spec (provenance; the oracle ceiling's parameters).
    extra = dict(result.spec.extra)
    extra["generator"] = {k: info[k] for k in (
        "num_rows", "seed", "target_ctr", "unknown_frac", "days", "max_len", "effects",
        "intercept", "realized_ctr")}
    extra["generator"].update({k: info.get(k, v) for k, v in WORLD_KNOBS.items()})
    extra["generator"]["regime"] = info.get("regime")
    result.spec = dataclasses.replace(result.spec, extra=extra)
    if out_dir is not None:
        result.spec.save(out_dir)
    return result


def make_synthetic_dataset(
    out_dir: str,
    *,
    regime: str | None = None,
    num_rows: int | None = None,
    seed: int = DEFAULT_SEED,
    max_len: int = DEFAULT_MAX_LEN,
    min_count: int | None = None,
    num_shards: int | None = None,
    progress: bool = True,
    time_unit: float = TIME_UNIT_MINUTES,
    feedback: bool = False,
    **generate_kwargs: Any,
) -> Any:
    """Generate raw files into ``<out_dir>/raw`` and prepare them into ``out_dir``.

    Args:
        out_dir: str. Prepared dataset directory (``dataset_spec.json`` at its root).
        regime: str. A name of :data:`REGIMES`; the other arguments override its values.
            Defaults to None (today's defaults).
        num_rows: int. Raw rows. Defaults to the regime's, else ``DEFAULT_NUM_ROWS``
            (250,000).
        seed: int. Random seed of the generator and the pipeline. Defaults to 2024.
        max_len: int. History length of both the click model and the pipeline.
            Defaults to 10.
        min_count: int. Vocabulary min count. Defaults to :func:`default_min_count`.
        num_shards: int. TFRecord shards per split. Defaults to the pipeline's choice.
        progress: bool. Print progress. Defaults to True.
        time_unit: float. Minutes per time-interval unit (see :func:`prepare`).
        feedback: bool. Add the labels of the history (see :func:`prepare`).
            Defaults to False.
        **generate_kwargs: Further :func:`generate` arguments (``target_ctr``,
            ``unknown_frac``, ``days``, ``impressions_per_user``, ``catalog_scale``...,
            effect strengths).

    Returns:
        The pipeline's ``PrepareResult``.

    Example:
        >>> result = make_synthetic_dataset("data/synthetic", num_rows=20_000, seed=1)
        >>> result.spec.has_oracle
        True
        >>> result = make_synthetic_dataset("data/dense", regime="dense")
    """
    raw_dir = os.path.join(out_dir, RAW_SUBDIR)
    info = generate(raw_dir, num_rows=num_rows, regime=regime, seed=seed, max_len=max_len,
                    **generate_kwargs)
    if progress:
        print(f"synthetic: wrote {info['num_rows']} raw rows into {raw_dir} "
              f"(CTR {info['realized_ctr']:.4f}, {info['total_seconds']:.1f} s)", flush=True)
    return prepare(raw_dir, out_dir, max_len=max_len, min_count=min_count,
                   num_shards=num_shards, progress=progress, time_unit=time_unit,
                   feedback=feedback)
