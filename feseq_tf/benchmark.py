"""Experiment suites: ``python -m feseq_tf.benchmark --dataset D --suite S --seeds N``.

Runs every variant of a suite with seeds 1..N (:func:`feseq_tf.train.run` in this process,
without export or attention summaries), each into
``<output-dir>/<suite>/<variant>/seed<k>`` (``--first-seed K``: seeds K..N only, so that
seeds can train in parallel processes into one directory; a later run with ``--seeds N``
finds them done and tables all N), and summarises them like the paper's tables:
``<output-dir>/<suite>.md`` and ``<suite>.csv`` (test AUC, gAUC and logloss as mean ± std
over the seeds, the captured share of the oracle's AUC lift when the dataset has an
oracle, parameters, training samples/s) and ``<suite>.png`` (AUC bars, std error bars).

Suites:

* ``baselines``: FESeq (as the recipe runs it), FESeq as the paper specifies it
  (``feseq_paper``), FESeq with the extra inputs (history match, wide term, target in the
  output), DeepFM, AutoInt, DCNv2, DIN, BST, DMR (``feseq_tf.models``), and DIN, BST and
  DMR with the extra inputs they can take (history match and wide term). Two rows whose
  runs would train the same model from the same seed (FESeq and FESeq (paper) where the
  recipe is the paper's architecture) share one run.
* ``ablations``: FESeq and its ablations as config overrides (paper Tables 4-10):
  w/o Int, w/o Non-seq Feats, w/o Pos, w/o Time, w/o Causal, mean / target pooling,
  dot / DIN attention, w/o Scale, w/o History.
* ``depth``: the interacting-layer depths M (input) and N (target item) one at a time
  around the default M = N = 2: M in {0, 1, 2, 3} with N = 2, then N in {0, 1, 3} with
  M = 2 (7 variants instead of the 16 of the full grid).
* ``embedding``: embedding_dim d in {8, 16, 32, 64} (paper Table 11).

Every suite ends with two reference rows, so that every table shows what a linear model
and a model handed the answer reach: ``lr`` (logistic regression on one-hot fields,
:class:`feseq_tf.models.LogisticRegression`, trained like the others) and ``gbdt`` (the
GBDT yardstick of :mod:`feseq_tf.yardstick`, fitted per seed on the same dataset and
cached in ``<output-dir>/<suite>/gbdt/seed<k>/metrics.json``; no parameters or
throughput). The yardstick is never bolded as the best row. ``--models`` leaves them out
like any variant.

The dataset is prepared once. The run is resumable: a run whose ``metrics.json``
exists is not trained again (it must have been run with the same configuration, or the
command stops and says so); an interrupted run resumes from its last epoch. ``--models``
restricts the suite to some variants (model names for ``baselines``, the variant names
printed by ``--list`` otherwise); the tables cover the variants of the invocation.
``--set`` overrides apply to every run, before the variant's own.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import time
from typing import Any

from feseq_tf import cli, tf_logging, train
from feseq_tf.config import MODEL_NAMES, PAPER_MODEL, ExperimentConfig
from feseq_tf.schema import DatasetSpec

#: The model name of the GBDT yardstick rows (no Keras model, no config).
GBDT = "gbdt"

DEFAULT_OUTPUT_DIR = os.path.join("runs", "benchmark")
METRICS = ("auc", "gauc", "logloss")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of a suite.

    Attributes:
        name: str. Directory name and ``--models`` key.
        label: str. Row label of the tables, as in the paper.
        model: str. Model name (``feseq``, a baseline, ``lr``) or :data:`GBDT`.
        overrides: tuple of (key, value). ``ModelConfig``/``TrainConfig`` values as
            ``("model.pooling", "mean")``, applied after the user's.
    """

    name: str
    label: str
    model: str = "feseq"
    overrides: tuple[tuple[str, Any], ...] = ()

    def override_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
        for key, value in self.overrides:
            section, field = key.split(".", 1)
            out[section][field] = value
        return out


_LABELS = {
    "feseq": "FESeq",
    "feseq_paper": "FESeq (paper)",
    "deepfm": "DeepFM",
    "autoint": "AutoInt",
    "dcnv2": "DCNv2",
    "din": "DIN",
    "bst": "BST",
    "dmr": "DMR",
    "lr": "Logistic regression",
}

#: The rows every suite ends with: logistic regression and the GBDT yardstick.
REFERENCE_ROWS = (
    # Trained as ``config.LINEAR_TRAINING`` says (Adam at 1e-2, batch 2048), as every lr run.
    Variant("lr", _LABELS["lr"], model="lr"),
    Variant(GBDT, "GBDT yardstick", model=GBDT),
)


def _with_reference_rows(variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
    names = {v.name for v in variants}
    return variants + tuple(v for v in REFERENCE_ROWS if v.name not in names)


def _depth(m: int, n: int) -> Variant:
    return Variant(
        f"M{m}_N{n}",
        f"M={m}, N={n}",
        overrides=(("model.input_interaction_layers", m), ("model.target_interaction_layers", n)),
    )


#: The inputs beyond the paper that FESeq's options add and that a sequence baseline can
#: take as well: the history-match field and the wide (one-hot linear) term. FESeq's third,
#: ``target_in_output``, is what DIN, BST and DMR give their MLP already.
EXTRA_INPUTS: tuple[tuple[str, Any], ...] = (("model.history_match", True), ("model.wide", True))
#: Sequence baselines that get a row with :data:`EXTRA_INPUTS` in the baselines suite.
EXTRA_INPUT_BASELINES = ("din", "bst", "dmr")
#: A baseline's own row: its published inputs, whatever the preset turns on for FESeq.
PLAIN_INPUTS: tuple[tuple[str, Any], ...] = tuple((key, False) for key, _ in EXTRA_INPUTS)


def _baselines() -> tuple[Variant, ...]:
    """FESeq as the recipe runs it and as the paper specifies it, FESeq with the extra
    inputs, every baseline with its published inputs and the sequence baselines with the
    extra inputs too, so that the table compares architectures with equal inputs."""
    rows = []
    for m in MODEL_NAMES:
        if m == "lr":  # a reference row (REFERENCE_ROWS)
            continue
        rows.append(Variant(m, _LABELS[m], m, () if m.startswith("feseq") else PLAIN_INPUTS))
        if m == "feseq_paper":
            rows.append(Variant(
                "feseq_extra", "FESeq + extra inputs",
                overrides=EXTRA_INPUTS + (("model.target_in_output", True),),
            ))
        if m in EXTRA_INPUT_BASELINES:
            rows.append(Variant(f"{m}_extra", f"{_LABELS[m]} + extra inputs", m, EXTRA_INPUTS))
    return tuple(rows)


_SUITES: dict[str, tuple[Variant, ...]] = {
    "baselines": _baselines(),
    "ablations": (
        Variant("full", "FESeq"),
        Variant("no_int", "w/o Int", overrides=(("model.input_interaction_layers", 0),)),
        Variant("no_nonseq", "w/o Non-seq Feats", overrides=(("model.nonseq_in_interaction", False),)),
        Variant("no_pos", "w/o Pos", overrides=(("model.use_position", False),)),
        Variant("no_time", "w/o Time", overrides=(("model.use_time", False),)),
        Variant("no_causal", "w/o Causal", overrides=(("model.causal", False),)),
        Variant("mean_pooling", "Mean pooling", overrides=(("model.pooling", "mean"),)),
        Variant("target_pooling", "Target pooling", overrides=(("model.pooling", "target"),)),
        Variant("dot_attention", "Dot attention", overrides=(("model.attention", "dot"),)),
        Variant("din_attention", "DIN attention", overrides=(("model.attention", "din"),)),
        Variant("no_scale", "w/o Scale", overrides=(("model.attention_scale", False),)),
        Variant("no_history", "w/o History", overrides=(("model.use_history", False),)),
        # The inputs beyond the paper: without each where the preset has them on (the
        # synthetic preset), with each where it has them off (the recipe); the rows that
        # equal "full" on a dataset share its runs.
        Variant("no_match", "w/o History match", overrides=(("model.history_match", False),)),
        Variant("no_wide", "w/o Wide", overrides=(("model.wide", False),)),
        Variant(
            "no_target_in_output", "w/o Target in output",
            overrides=(("model.target_in_output", False),),
        ),
        Variant("with_match", "+ History match", overrides=(("model.history_match", True),)),
        Variant("with_wide", "+ Wide", overrides=(("model.wide", True),)),
        Variant(
            "with_target_in_output", "+ Target in output",
            overrides=(("model.target_in_output", True),),
        ),
    ),
    "depth": tuple(_depth(m, 2) for m in range(4)) + tuple(_depth(2, n) for n in (0, 1, 3)),
    "embedding": tuple(
        Variant(f"d{d}", f"d={d}", overrides=(("model.embedding_dim", d),)) for d in (8, 16, 32, 64)
    ),
}
SUITES: dict[str, tuple[Variant, ...]] = {k: _with_reference_rows(v) for k, v in _SUITES.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m feseq_tf.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--suite", required=True, choices=sorted(SUITES))
    p.add_argument(
        "--dataset",
        default="synthetic",
        help="synthetic (default), eleme, bundle, or a prepared dataset directory",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 1..N per variant (default: 3)")
    p.add_argument(
        "--first-seed", type=int, default=1,
        help="run seeds K..N only (default: 1), e.g. to train seeds in parallel processes; "
        "the table summarises the seeds run",
    )
    p.add_argument("--models", help="comma-separated variants to run (default: the whole suite)")
    p.add_argument("--list", action="store_true", help="print the suite's variants and exit")
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR)
    train.add_dataset_arguments(p)
    train.add_config_arguments(p, " of every run")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--mixed-precision", choices=("off", "bfloat16", "float16", "auto"))
    return p


def select_variants(suite: str, models: str | None) -> list[Variant]:
    variants = list(SUITES[suite])
    if not models:
        return variants
    wanted = [m.strip() for m in models.split(",") if m.strip()]
    known = [v.name for v in variants]
    unknown = [m for m in wanted if m not in known]
    if unknown:
        raise SystemExit(f"--models: {unknown} not in suite {suite!r}; known: {known}")
    return [v for v in variants if v.name in wanted]


def run_config(
    args: argparse.Namespace,
    variant: Variant,
    seed: int,
    dataset_name: str,
    spec: DatasetSpec | None = None,
) -> ExperimentConfig:
    """The resolved configuration of one run: preset, ``--config``, ``--set`` and the
    flags of the command, then the variant's own overrides and the seed."""
    overrides = train.parse_overrides(args.set)
    flags = {"epochs": args.epochs, "batch_size": args.batch_size,
             "mixed_precision": args.mixed_precision}
    overrides["train"].update({k: v for k, v in flags.items() if v is not None})
    for section, values in variant.override_dict().items():
        overrides[section].update(values)
    overrides["train"]["seed"] = seed
    return train.resolve_config(
        dataset_name, preset_name=train.preset_for(args.dataset, args.preset),
        config_file=args.config, overrides=overrides,
        model_name=variant.model, spec=spec,
    )


def training_key(config: ExperimentConfig) -> str:
    """What decides a run's training: its config, with ``feseq_paper`` as ``feseq`` (the
    same model once the config is the paper's architecture). Two variants with one key
    train the same model from the same seed, so a suite trains it once."""
    d = config.to_dict()
    if d["model_name"] == PAPER_MODEL:
        d["model_name"] = "feseq"
    return json.dumps(d, sort_keys=True)


def _saved_config(run_dir: str) -> dict[str, Any] | None:
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return ExperimentConfig.from_dict(json.load(fh)).to_dict()


def run_one(
    config: ExperimentConfig, dataset_dir: str, run_dir: str
) -> tuple[dict[str, Any], bool]:
    """Train one run unless its ``metrics.json`` exists; returns (metrics, trained)."""
    expected = config.to_dict()
    saved = _saved_config(run_dir)
    metrics_path = os.path.join(run_dir, "metrics.json")
    if os.path.exists(metrics_path):
        if saved is not None and saved != expected:
            raise train.UsageError(
                f"{run_dir} holds a finished run with another configuration than this "
                "command's; pass another --output-dir or delete that run."
            )
        with open(metrics_path) as fh:
            return json.load(fh), False
    overwrite = saved is not None and saved != expected
    if overwrite:
        print(
            f"  {run_dir} holds an interrupted run with another configuration: starting it afresh",
            flush=True,
        )
    import keras

    keras.backend.clear_session()  # free the previous run's graphs; reset layer names
    metrics = train.run(
        config, dataset_dir, run_dir, attention_summaries=False, export=False, overwrite=overwrite
    )
    return metrics, True


def run_gbdt(dataset_dir: str, run_dir: str, seed: int) -> tuple[dict[str, Any], bool]:
    """Fit the GBDT yardstick with ``seed`` unless ``<run_dir>/metrics.json`` exists;
    returns (metrics, fitted). The metrics hold ``test`` and ``valid`` like a run's."""
    from feseq_tf.yardstick import gbdt_run

    spec = DatasetSpec.load(dataset_dir)
    expected = {"dataset": spec.name, "split_sizes": spec.split_sizes, "seed": seed}
    metrics_path = os.path.join(run_dir, "metrics.json")
    if os.path.exists(metrics_path):
        with open(metrics_path) as fh:
            metrics = json.load(fh)
        if metrics.get("config") != expected:
            raise train.UsageError(
                f"{run_dir} holds a GBDT yardstick of another dataset or seed than this "
                "command's; pass another --output-dir or delete it."
            )
        return metrics, False
    result = gbdt_run(dataset_dir, seed=seed)
    metrics = {"model": GBDT, "config": expected, **result}
    os.makedirs(run_dir, exist_ok=True)
    with open(metrics_path + ".tmp", "w") as fh:
        json.dump(metrics, fh, indent=2)
    os.replace(metrics_path + ".tmp", metrics_path)
    return metrics, True


def _stats(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def summarise(variant: Variant, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row: mean and std over the seeds of the test metrics."""
    row: dict[str, Any] = {
        "variant": variant.name,
        "label": variant.label,
        "model": variant.model,
        "seeds": len(runs),
    }
    keys = list(METRICS)
    if all("captured_lift" in r["test"] for r in runs):
        keys.append("captured_lift")
    for key in keys:
        row[f"{key}_mean"], row[f"{key}_std"] = _stats([r["test"].get(key) for r in runs])
    parameters = runs[0].get("parameters")  # none for the GBDT yardstick
    row["parameters"] = int(parameters) if parameters is not None else None
    row["train_samples_per_s"] = _stats([r.get("train_samples_per_s") for r in runs])[0]
    return row


def write_csv(rows: list[dict[str, Any]], path: str) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _pm(row: dict[str, Any], key: str, best: float | None) -> str:
    mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
    if mean is None:
        return "-"
    text = f"{mean:.4f} ± {std:.4f}"
    return f"**{text}**" if best is not None and mean == best else text


def markdown_table(rows: list[dict[str, Any]], title: str) -> str:
    """The paper's layout; the best mean AUC, gAUC (highest) and logloss (lowest) in bold,
    among the models (the GBDT yardstick is a reference, never bolded)."""
    lift = any("captured_lift_mean" in r for r in rows)
    models = [r for r in rows if r.get("model") != GBDT]
    best = {}
    for key, pick in (("auc", max), ("gauc", max), ("logloss", min)):
        means = [r[f"{key}_mean"] for r in models if math.isfinite(r[f"{key}_mean"])]
        best[key] = pick(means) if len(models) > 1 and means else None
    header = ["Model", "AUC", "gAUC", "Logloss"] + (["Captured lift"] if lift else [])
    header += ["Params", "Train samples/s"]
    lines = [
        f"# {title}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for r in rows:
        reference = r.get("model") == GBDT
        cells = [r["label"]] + [_pm(r, k, None if reference else best[k]) for k in METRICS]
        if lift:
            cells.append(_pm(r, "captured_lift", None))
        speed, params = r["train_samples_per_s"], r["parameters"]
        cells += [
            f"{params:,}" if params is not None else "-",
            f"{speed:,.0f}" if speed is not None and math.isfinite(speed) else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_auc(rows: list[dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["label"] for r in rows]
    means = [r["auc_mean"] for r in rows]
    stds = [r["auc_std"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.6))
    colors = ["#999999" if r.get("model") == GBDT else "#4c72b0" for r in rows]  # reference grey
    ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color=colors)
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right")
    finite = [(m - s, m + s) for m, s in zip(means, stds, strict=True) if math.isfinite(m)]
    if finite:
        low, high = min(lo for lo, _ in finite), max(hi for _, hi in finite)
        pad = max(0.1 * (high - low), 0.002)
        ax.set_ylim(low - pad, high + pad)
    ax.set_ylabel("test AUC (mean ± std)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@cli.command
def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run (or resume) a suite and write its tables; returns the table rows."""
    args = build_parser().parse_args(argv)
    tf_logging.import_tensorflow()  # C++ logs: warnings and errors
    variants = select_variants(args.suite, args.models)
    if args.list:
        for v in variants:
            sets = " ".join(f"{k}={json.dumps(val)}" for k, val in v.overrides)
            print(f"{v.name:16s} {v.label:20s} {v.model} {sets}")
        return []
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {args.seeds}.")
    if not 1 <= args.first_seed <= args.seeds:
        raise SystemExit(f"--first-seed must be in [1, --seeds={args.seeds}], got {args.first_seed}.")
    return _run_suite(args, variants)  # a UsageError is one line (feseq_tf.cli)


def _run_suite(args: argparse.Namespace, variants: list[Variant]) -> list[dict[str, Any]]:
    dataset_name, dataset_dir = train.prepare_dataset(
        args.dataset, data_dir=args.data_dir, raw_dir=args.raw_dir,
        synthetic_rows=args.synthetic_rows, synthetic_seed=args.synthetic_seed,
    )
    # The runs name the dataset after its spec.
    dataset_spec = DatasetSpec.load(dataset_dir)
    run_dataset_name = dataset_spec.name
    suite_dir = os.path.join(args.output_dir, args.suite)
    seeds = range(args.first_seed, args.seeds + 1)
    total = len(variants) * len(seeds)
    rows, step = [], 0
    done_runs: dict[str, tuple[str, dict[str, Any]]] = {}  # same training -> same metrics
    for variant in variants:
        runs = []
        for seed in seeds:
            step += 1
            run_dir = os.path.join(suite_dir, variant.name, f"seed{seed}")
            print(f"[{step}/{total}] {variant.name} seed {seed} ...", flush=True)
            start = time.time()
            if variant.model == GBDT:
                metrics, trained = run_gbdt(dataset_dir, run_dir, seed)
            else:
                config = run_config(args, variant, seed, run_dataset_name, dataset_spec)
                key = training_key(config)
                if key in done_runs:  # e.g. FESeq and FESeq (paper) where the recipe is the paper
                    same, metrics = done_runs[key]
                    print(f"[{step}/{total}] {variant.name} seed {seed}: the same training "
                          f"as {same}, its metrics", flush=True)
                    runs.append(metrics)
                    continue
                metrics, trained = run_one(config, dataset_dir, run_dir)
                done_runs[key] = (variant.name, metrics)
            done = f"done in {time.time() - start:.0f}s" if trained else "already done, skipped"
            print(
                f"[{step}/{total}] {variant.name} seed {seed}: {done}; test AUC "
                f"{metrics['test']['auc']:.5f}",
                flush=True,
            )
            runs.append(metrics)
        rows.append(summarise(variant, runs))

    base = os.path.join(args.output_dir, args.suite)
    if args.first_seed == 1:
        which = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    else:
        which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
    title = f"{args.suite} on {args.dataset} ({which})"
    write_csv(rows, base + ".csv")
    with open(base + ".md", "w") as fh:
        fh.write(markdown_table(rows, title))
    plot_auc(rows, base + ".png", title)
    print(markdown_table(rows, title), flush=True)
    print(f"wrote {base}.md, {base}.csv, {base}.png", flush=True)
    return rows


if __name__ == "__main__":
    main()
