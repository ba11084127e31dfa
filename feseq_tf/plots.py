"""The attention heatmaps as matplotlib figures and PNG files (paper Figs. 5-8).

The same labelled matrices the TensorBoard plugin draws, for papers and notebooks:
from :func:`feseq_tf.explain.attention_matrices` (computed from a model) or from
:func:`feseq_tf.tensorboard_plugin.reader.read_matrices` (read from training logs).

Example:
>>> fig = plot_matrix(m.values, m.info, highlight=[("gender", "category_1_id")])
>>> save_png(fig, "figures/field_attention.png")

Command line (the last step of every logged matrix to PNG)::

    python -m feseq_tf.plots --logdir runs/feseq/logs --out runs/feseq/figures
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from feseq_tf import cli
from feseq_tf.tensorboard_plugin.metadata import MatrixInfo

DEFAULT_CMAP = "viridis"
HIGHLIGHT_COLOUR = "red"


def _new_axes(rows: int, cols: int, ax: Any | None) -> tuple[Figure, Any]:
    if ax is not None:
        return ax.figure, ax
    cell = 0.32 if max(rows, cols) > 12 else 0.45
    width = min(16.0, max(4.5, 2.8 + cols * cell))
    height = min(14.0, max(2.0, 1.8 + rows * min(cell, 7.5 / max(rows, 1))))
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def plot_matrix(
    values: Any,
    info: MatrixInfo,
    *,
    ax: Any | None = None,
    title: str | None = None,
    cmap: str = DEFAULT_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    smooth: bool = False,
    highlight: Sequence[tuple[str, str]] = (),
    colorbar: bool = True,
) -> Figure:
    """A labelled heatmap of one matrix.

    Args:
        values: array-like of shape ``info.shape``.
        info: MatrixInfo. Labels and axis titles.
        ax: matplotlib Axes to draw into. Defaults to a new Figure's.
        title: str. Defaults to ``info.description``'s first sentence.
        cmap: str. Colour map. Defaults to ``"viridis"``.
        vmin: float. Colour range start. Defaults to the minimum.
        vmax: float. Colour range end. Defaults to the maximum.
        smooth: bool. Bicubic interpolation between cells (the paper's smoothed
            pooling heatmaps, Figs. 7-8). Defaults to False.
        highlight: sequence of (row label, column label). Cells outlined in red, both
            (row, col) and (col, row) where both exist (the paper's red rectangles).
            Defaults to none.
        colorbar: bool. Draw a colour bar. Defaults to True.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: if the shape does not match the labels or a highlighted label is
            unknown.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.shape != info.shape:
        raise ValueError(
            f"values have shape {array.shape}, the labels say {info.shape}."
        )
    rows, cols = array.shape
    fig, ax = _new_axes(rows, cols, ax)
    image = ax.imshow(
        array, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
        interpolation="bicubic" if smooth else "nearest",
    )
    ax.set_xticks(range(cols), info.col_labels, rotation=90 if cols > 6 else 0, fontsize=8)
    ax.set_yticks(range(rows), info.row_labels, fontsize=8 if rows <= 40 else 6)
    ax.set_xlabel(info.col_title)
    ax.set_ylabel(info.row_title)
    if title is None:
        title = info.description.split(": ")[0].split(". ")[0] if info.description else ""
    ax.set_title(title, fontsize=10)
    rows_index = {label: i for i, label in enumerate(info.row_labels)}
    cols_index = {label: j for j, label in enumerate(info.col_labels)}
    for a, b in highlight:
        if (a not in rows_index and a not in cols_index) or (b not in rows_index and b not in cols_index):
            raise ValueError(f"highlight ({a!r}, {b!r}) names a label the matrix does not have.")
        for r, c in ((a, b), (b, a)):
            if r in rows_index and c in cols_index:
                ax.add_patch(Rectangle(
                    (cols_index[c] - 0.5, rows_index[r] - 0.5), 1, 1,
                    fill=False, edgecolor=HIGHLIGHT_COLOUR, linewidth=2,
                ))
    if colorbar:
        fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def plot_pooling(values: Any, info: MatrixInfo, *, smooth: bool = True, **kwargs: Any) -> Figure:
    """Sequence-pooling attention, samples x positions, smoothed as in Figs. 7-8."""
    return plot_matrix(values, info, smooth=smooth, **kwargs)


def save_png(fig: Figure, path: str, dpi: int = 150) -> str:
    """Writes ``fig`` to ``path`` (directories created) and returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def png_name(run: str, tag: str, step: int) -> str:
    """A file name for a run, tag and step: ``attention__input_fields__step3.png``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{run}__{tag}").strip("_.") or "matrix"
    return f"{safe}__step{step}.png"


def plot_logdir(logdir: str, out_dir: str, *, run: str | None = None, step: int | None = None) -> list[str]:
    """PNGs of every logged matrix under ``logdir`` at ``step`` (default: each one's last).

    Returns:
        The written paths, sorted.

    Raises:
        FileNotFoundError: if the log directory holds no matrices (at that step).
    """
    from feseq_tf.tensorboard_plugin.reader import read_matrices

    chosen: dict[tuple[str, str], Any] = {}
    for m in read_matrices(logdir, run=run):
        if step is None or m.step == step:
            chosen[(m.run, m.tag)] = m  # sorted by step: the last one wins
    if not chosen:
        where = f" at step {step}" if step is not None else ""
        raise FileNotFoundError(f"No attention matrices{where} under {logdir!r}.")
    paths = []
    for (run_name, tag), m in sorted(chosen.items()):
        title = f"{tag} ({run_name}, step {m.step})"
        plot = plot_pooling if tag.endswith("pooling_samples") else plot_matrix
        fig = plot(m.values, m.info, title=title)
        paths.append(save_png(fig, os.path.join(out_dir, png_name(run_name, tag, m.step))))
    return paths


@cli.command
def main(argv: list[str] | None = None) -> list[str]:
    """``python -m feseq_tf.plots --logdir DIR --out DIR [--run RUN] [--step N]``."""
    parser = argparse.ArgumentParser(prog="python -m feseq_tf.plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", required=True, help="TensorBoard log directory")
    parser.add_argument("--out", required=True, help="directory of the PNG files")
    parser.add_argument("--run", help="only this run (default: all)")
    parser.add_argument("--step", type=int, help="this step (default: the last of each matrix)")
    args = parser.parse_args(argv)
    try:
        paths = plot_logdir(args.logdir, args.out, run=args.run, step=args.step)
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from err
    for p in paths:
        print(p)
    return paths


if __name__ == "__main__":
    main()
