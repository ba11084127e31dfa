"""MovieLens 100K (GroupLens) as an impression log: a real public log for the package's checks.

MovieLens 100K holds 100,000 ratings (1 to 5) of 1,682 movies by 943 users, each user with
at least 20 ratings, most of them given in one sitting. It is not shipped with this package
(its licence does not allow redistribution): download ``ml-100k.zip`` from GroupLens and
unzip it. This module reads the three files of its original layout:

* ``u.data``: ``user id \\t item id \\t rating \\t timestamp`` (seconds);
* ``u.user``: ``user id | age | gender | occupation | zip code``;
* ``u.item``: ``movie id | title | release date | video release date | IMDb URL`` and 19
  0/1 genre flags (unknown, Action, Adventure, Animation, Children's, Comedy, Crime,
  Documentary, Drama, Fantasy, Film-Noir, Horror, Musical, Mystery, Romance, Sci-Fi,
  Thriller, War, Western), Latin-1 text;

and turns them into the impression table of :func:`pipeline_spec`: a rating is an
impression, its label 1 when the rating is at least ``positive_rating`` (4: 55 % of the
ratings), the user fields ``user_id``, ``age``, ``gender``, ``occupation``, ``zip_code``
(non-sequential), the movie fields ``item_id``, ``release_year`` and ``genre`` (the first
genre flag set; role item, with the user's earlier ratings as their history). The split is
the package's 8:1:1 by time: since most users rate in one sitting, most users of the
validation and test splits are not in the training split (about 85 % of the test
impressions have an unknown ``user_id``), which is what the ``"auto"`` id dropout of the
default recipe is for (README, "Unknown users").

Command line::

    python -m pipelines.movielens --raw-dir ml-100k --out data/ml100k [--feedback]
    python -m feseq_tf.train --dataset data/ml100k
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from feseq_tf import cli
from pipelines import generic
from pipelines.spec import FieldConfig, PipelineSpec
from pipelines.writer import PrepareResult

DATASET_NAME = "ml100k"
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)
RAW_FILES = ("u.data", "u.user", "u.item")
DEFAULT_POSITIVE_RATING = 4

NON_SEQUENTIAL_FIELDS: tuple[FieldConfig, ...] = tuple(
    FieldConfig(name, "categorical", "user") for name in ("user_id", "age", "gender", "occupation", "zip_code")
)
SEQUENTIAL_FIELDS: tuple[FieldConfig, ...] = tuple(
    FieldConfig(name, "categorical", "item") for name in ("item_id", "release_year", "genre")
)


def pipeline_spec(*, max_len: int = 10, min_count: int = 10, feedback: bool = False) -> PipelineSpec:
    """The MovieLens 100K impression schema (5 user fields, 3 movie fields with history)."""
    return PipelineSpec(
        name=DATASET_NAME,
        user_key="user_id",
        timestamp="timestamp",
        label="label",
        non_sequential_fields=NON_SEQUENTIAL_FIELDS,
        sequential_fields=SEQUENTIAL_FIELDS,
        max_len=max_len,
        min_count=min_count,
        feedback=feedback,
    )


def _check_columns(df: pd.DataFrame, path: str, expected: int) -> None:
    if df.shape[1] != expected:
        raise ValueError(f"{path}: expected {expected} columns, found {df.shape[1]}; is this "
                         "the MovieLens 100K layout (u.data, u.user, u.item)?")


def read_movielens(raw_dir: str, positive_rating: int = DEFAULT_POSITIVE_RATING) -> pd.DataFrame:
    """The impression table: one row per rating, with the user's and the movie's fields.

    Raises:
        FileNotFoundError: a file of :data:`RAW_FILES` is missing (the message says where
            the data comes from).
        ValueError: a file does not have its layout's columns, a rating is not 1-5, or a
            rating names a user or movie its file lacks.
    """
    if not 1 <= positive_rating <= 5:
        raise ValueError(f"positive_rating must be in 1..5, got {positive_rating!r}.")
    paths = {name: os.path.join(raw_dir, name) for name in RAW_FILES}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"MovieLens 100K files not found: {missing}. Download ml-100k.zip from GroupLens "
            "(grouplens.org/datasets/movielens/100k), unzip it and pass its folder as --raw-dir."
        )
    ratings = pd.read_csv(paths["u.data"], sep="\t", header=None, dtype=str)
    _check_columns(ratings, paths["u.data"], 4)
    ratings.columns = ["user_id", "item_id", "rating", "timestamp"]
    users = pd.read_csv(paths["u.user"], sep="|", header=None, dtype=str, keep_default_na=False)
    _check_columns(users, paths["u.user"], 5)
    users.columns = ["user_id", "age", "gender", "occupation", "zip_code"]
    items = pd.read_csv(paths["u.item"], sep="|", header=None, dtype=str, encoding="latin-1",
                        keep_default_na=False)
    _check_columns(items, paths["u.item"], 5 + len(GENRES))
    flags = items.iloc[:, 5:].to_numpy() == "1"
    first = flags.argmax(axis=1)
    movies = pd.DataFrame({
        "item_id": items.iloc[:, 0],
        # "01-Jan-1995" -> "1995"; an empty date stays empty (a missing value: the OOV id)
        "release_year": items.iloc[:, 2].str.strip().str[-4:],
        "genre": np.where(flags.any(axis=1), np.array(GENRES, dtype=object)[first], ""),
    })
    rating = pd.to_numeric(ratings["rating"], errors="coerce")
    bad = ~rating.isin([1, 2, 3, 4, 5])
    if bad.any():
        raise ValueError(f"{paths['u.data']}: {int(bad.sum())} rating(s) not in 1..5, e.g. "
                         f"{ratings.loc[bad, 'rating'].iloc[0]!r}.")
    df = ratings.merge(users, on="user_id", how="left", validate="many_to_one", indicator="_users")
    df = df.merge(movies, on="item_id", how="left", validate="many_to_one", indicator="_items")
    for column, what in (("_users", "u.user"), ("_items", "u.item")):
        unmatched = int((df[column] != "both").sum())
        if unmatched:
            raise ValueError(f"{unmatched} rating(s) name a user or movie missing from {what}.")
    df["label"] = (rating >= positive_rating).astype(np.int64).to_numpy()
    return df.drop(columns=["rating", "_users", "_items"])


def prepare(raw_dir: str, out_dir: str, *, positive_rating: int = DEFAULT_POSITIVE_RATING,
            progress: bool = True, **spec_options: Any) -> PrepareResult:
    """Read the raw files and write the prepared dataset (see :mod:`pipelines.generic`)."""
    table = read_movielens(raw_dir, positive_rating)
    return generic.build_dataset(table, pipeline_spec(**spec_options), out_dir, progress=progress)


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.movielens", description=__doc__.split("\n")[0])
    p.add_argument("--raw-dir", required=True, help="folder with u.data, u.user and u.item")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--positive-rating", type=int, default=DEFAULT_POSITIVE_RATING,
                   help="lowest rating labelled 1 (default: 4)")
    p.add_argument("--feedback", action="store_true", help="add the labels of the history as a field")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    try:
        result = prepare(args.raw_dir, args.out, positive_rating=args.positive_rating,
                         progress=not args.quiet, feedback=args.feedback)
    except (FileNotFoundError, ValueError) as err:
        print(cli.error_line(err), file=sys.stderr)
        return 2
    print(json.dumps({"out": args.out, "samples": result.report["samples"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
