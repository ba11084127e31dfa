"""Raw synthetic files: :func:`generate` writes the day files, oracle files and ``generator.json``.

The day files (``D1_0.csv``, ``D3_1.csv``, ``D5_0.csv``) are in exactly the raw Ele.me
layout (comma separated, no header, the 39 columns of :data:`pipelines.eleme.RAW_COLUMNS`);
next to every ``X.csv`` the oracle side file ``X.oracle.csv`` holds the true click
probability of each raw line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipelines.eleme import DEFAULT_DAYS, ORACLE_SUFFIX, RAW_COLUMNS
from pipelines.synthetic.columns import PerUser
from pipelines.synthetic.effects import EFFECT_NAMES, Effects
from pipelines.synthetic.regimes import WORLD_KNOBS, regime_kwargs
from pipelines.synthetic.simulation import DEFAULT_MAX_LEN, DEFAULT_SEED, Simulation, simulate

GENERATOR_FILE = "generator.json"


def file_rows(sim: Simulation) -> list[np.ndarray]:
    """The raw rows of every day file, in file order (shuffled within a day, seeded)."""
    rng = np.random.default_rng([sim.params["seed"], 7])
    rows = []
    for d in range(len(sim.params["days"])):
        day_rows = np.flatnonzero(sim.row_day == d)
        rows.append(day_rows[rng.permutation(len(day_rows))])
    return rows


def write_raw_files(sim: Simulation, raw_dir: str, *, chunk_rows: int = 200_000) -> dict[str, int]:
    """Write ``<day>.csv`` and ``<day>.oracle.csv`` for every day; rows shuffled within a day."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = RAW_COLUMNS
    missing_cols = sorted(set(columns) - set(sim.columns))
    if missing_cols or len(columns) != len(sim.columns):
        raise RuntimeError(f"Internal error: raw columns mismatch {missing_cols}.")
    os.makedirs(raw_dir, exist_ok=True)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none", delimiter=",")
    types = {}
    for name in columns:
        v = sim.columns[name]
        if isinstance(v, PerUser) or v.dtype == object:
            types[name] = pa.string()
        elif np.issubdtype(v.dtype, np.integer):
            types[name] = pa.int64()
        else:
            types[name] = pa.float64()
    schema = pa.schema([(name, types[name]) for name in columns])
    missing_mask = {}
    n_raw = len(sim.row_prob)
    for name, rows in sim.missing.items():
        mask = np.zeros(n_raw, bool)
        mask[rows] = True
        missing_mask[name] = mask
    written = {}
    for day, rows in zip(sim.params["days"], file_rows(sim), strict=True):
        path = os.path.join(raw_dir, day + ".csv")
        with pacsv.CSVWriter(path, schema, write_options=options) as writer:
            for start in range(0, len(rows), chunk_rows):
                chunk = rows[start:start + chunk_rows]
                arrays = []
                for name in columns:
                    v = sim.columns[name]
                    if isinstance(v, PerUser):
                        arr = v.values.take(pa.array(v.user[chunk]))
                    else:
                        mask = missing_mask[name][chunk] if name in missing_mask else None
                        arr = pa.array(v[chunk], type=types[name], mask=mask)
                    arrays.append(arr)
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        oracle = pa.table({"p": pa.array(np.round(sim.row_prob[rows], 10))})
        pacsv.write_csv(oracle, os.path.join(raw_dir, day + ORACLE_SUFFIX),
                        write_options=pacsv.WriteOptions(include_header=False))
        written[day] = int(len(rows))
    return written


def generate(
    out_dir: str,
    *,
    num_rows: int | None = None,
    regime: str | None = None,
    seed: int = DEFAULT_SEED,
    target_ctr: float | None = None,
    unknown_frac: float | None = None,
    days: Sequence[str] = DEFAULT_DAYS,
    max_len: int = DEFAULT_MAX_LEN,
    impressions_per_user: float | None = None,
    impressions_sigma: float | None = None,
    max_impressions_per_user: int | None = None,
    catalog_scale: float | None = None,
    user_arrival: float | None = None,
    item_relist: float | None = None,
    appeal_drift: float | None = None,
    **strengths: float,
) -> dict[str, Any]:
    """Write synthetic raw day files in the Ele.me layout, their oracle files and ``generator.json``.

    Every generator knob left at None takes the value of ``regime`` (a name of
    :data:`REGIMES`), or without a regime today's default (the ``"default"`` regime);
    an argument given overrides the regime.

    Args:
        out_dir: str. Directory for ``<day>.csv``, ``<day>.oracle.csv`` and
            ``generator.json`` (created if missing).
        num_rows: int. Raw rows to write over all days (50 to 10 M); 1.2 M is Ele.me's
            size. Defaults to the regime's, else 250,000.
        regime: str. A name of :data:`REGIMES`. Defaults to None (today's defaults).
        seed: int. Random seed; the files are a deterministic function of the arguments.
            Defaults to 2024.
        target_ctr: float. Mean click probability, in (0, 0.9]. Defaults to 0.04.
        unknown_frac: float. Share of rows carrying an unknown code or a missing value
            (the pipeline drops them). Defaults to 0.002.
        days: sequence of str. Day file names ``D<weekday>_<k>``. Defaults to
            ``("D1_0", "D3_1", "D5_0")``.
        max_len: int. History length of the click model (the pipeline's ``max_len``).
            Defaults to 10.
        impressions_per_user: float. Median of the log-normal impressions-per-user draw
            (see :func:`simulate`). Defaults to 3.0.
        impressions_sigma: float. Its log-sd. Defaults to 1.0.
        max_impressions_per_user: int. Cap of a user's impressions. Defaults to 200.
        catalog_scale: float. World-size multiplier (shops, items...). Defaults to 1.0.
        user_arrival, item_relist, appeal_drift: float. Drift over the days: users who
            arrive later, items relisted under new ids, item appeal walking (see
            :func:`simulate`). Default to 0 (no drift).
        **strengths: float. Effect strengths, the fields of :class:`Effects` (on top of
            the regime's).

    Returns:
        The content of ``generator.json``: parameters (``regime`` included), calibrated
        intercept, realised CTR, world sizes, rows per file, history-length
        distribution, standard deviation of every logit term and the generation time.

    Example:
        >>> info = generate("raw", num_rows=1000, seed=1, history_shop=0.0)
        >>> info = generate("dense", regime="dense", num_rows=5000)
    """
    given = {"num_rows": num_rows, "target_ctr": target_ctr, "unknown_frac": unknown_frac,
             "impressions_per_user": impressions_per_user, "impressions_sigma": impressions_sigma,
             "max_impressions_per_user": max_impressions_per_user, "catalog_scale": catalog_scale,
             "user_arrival": user_arrival, "item_relist": item_relist, "appeal_drift": appeal_drift}
    knobs = regime_kwargs(regime, **{k: v for k, v in given.items() if v is not None}, **strengths)
    effects = Effects.from_kwargs(**{k: knobs.pop(k) for k in EFFECT_NAMES if k in knobs})
    t0 = time.perf_counter()
    sim = simulate(knobs.pop("num_rows"), seed=seed, days=days, max_len=max_len,
                   effects=effects, **knobs)
    t_sim = time.perf_counter() - t0
    files = write_raw_files(sim, out_dir)
    info = dict(sim.params)
    info.update(
        regime=regime,
        generator="pipelines.synthetic",
        intercept=sim.intercept,
        realized_ctr=float(sim.label.mean()),
        mean_probability=float(sim.prob.mean()),
        world=sim.world,
        files=files,
        component_std={c: float(v.std()) for c, v in sim.components.items()},
        simulate_seconds=round(t_sim, 3),
        total_seconds=round(time.perf_counter() - t0, 3),
    )
    with open(os.path.join(out_dir, GENERATOR_FILE), "w") as fh:
        json.dump(info, fh, indent=2)
    return info


def read_generator_info(raw_dir: str) -> dict[str, Any]:
    """The ``generator.json`` of a raw directory written by :func:`generate`."""
    path = os.path.join(raw_dir, GENERATOR_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No {GENERATOR_FILE} in {raw_dir}: run generate() first.")
    with open(path) as fh:
        return json.load(fh)


def simulation_from_info(info: dict[str, Any]) -> Simulation:
    """Re-run the simulation that wrote a raw directory (deterministic) from its info."""
    # Raw directories written before a knob existed were made with its default.
    knobs = {k: info.get(k, v) for k, v in WORLD_KNOBS.items()}
    return simulate(info["num_rows"], seed=info["seed"], target_ctr=info["target_ctr"],
                    unknown_frac=info["unknown_frac"], days=info["days"],
                    max_len=info["max_len"], effects=Effects(**info["effects"]), **knobs)
