"""MovieLens 100K reader on fixture files in the GroupLens layout (u.data, u.user, u.item)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from pipelines import movielens


def _flags(*genres: str) -> list[str]:
    return ["1" if g in genres else "0" for g in movielens.GENRES]


def _write(raw, ratings, users=None, items=None):
    os.makedirs(raw, exist_ok=True)
    users = users or [["1", "24", "M", "technician", "85711"], ["2", "53", "F", "other", "94043"]]
    items = items or [
        ["1", "Toy Story (1995)", "01-Jan-1995", "", "http://x", *_flags("Animation", "Children's", "Comedy")],
        ["2", "Café (1996)", "", "", "http://y", *_flags()],  # no date, no genre, Latin-1 title
        ["3", "Heat (1995)", "15-Dec-1995", "", "http://z", *_flags("Action", "Crime", "Thriller")],
    ]
    with open(os.path.join(raw, "u.data"), "w") as fh:
        fh.writelines("\t".join(map(str, r)) + "\n" for r in ratings)
    with open(os.path.join(raw, "u.user"), "w") as fh:
        fh.writelines("|".join(u) + "\n" for u in users)
    with open(os.path.join(raw, "u.item"), "w", encoding="latin-1") as fh:
        fh.writelines("|".join(i) + "\n" for i in items)


RATINGS = [[1, 1, 5, 100], [1, 2, 3, 110], [2, 3, 4, 105], [2, 1, 1, 120], [1, 3, 4, 130]]


def test_read_joins_the_user_and_movie_fields_and_labels_high_ratings(tmp_path):
    _write(str(tmp_path), RATINGS)
    df = movielens.read_movielens(str(tmp_path)).sort_values("timestamp")
    assert len(df) == 5  # no rating lost
    np.testing.assert_array_equal(df["label"], [1, 1, 0, 0, 1])  # 5, 4, 3, 1, 4 at ts 100..130
    heat = df[df.item_id == "3"].iloc[0]
    assert (heat.release_year, heat.genre) == ("1995", "Action")  # the first genre flag set
    cafe = df[df.item_id == "2"].iloc[0]
    assert (cafe.release_year, cafe.genre) == ("", "")  # missing: the OOV id downstream
    assert set(df[df.user_id == "2"].occupation) == {"other"}
    assert movielens.read_movielens(str(tmp_path), positive_rating=5)["label"].sum() == 1


def test_prepare_writes_a_dataset_with_histories_of_earlier_ratings(tmp_path):
    ratings = [[u, 1 + (u + k) % 3, 1 + (u * k) % 5, 1000 * u + k] for u in (1, 2) for k in range(20)]
    _write(str(tmp_path / "raw"), ratings)
    result = movielens.prepare(str(tmp_path / "raw"), str(tmp_path / "out"), progress=False, min_count=1)
    assert sum(result.report["samples"].values()) == 40
    spec = json.loads((tmp_path / "out" / "dataset_spec.json").read_text())
    names = [f["name"] for f in spec["fields"]]
    assert names[:5] == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert {"item_id", "release_year", "genre"} <= set(names)
    train = result.tables["train"]
    assert train["hist_len"].max() == 10  # the user's earlier ratings, up to max_len


def test_missing_files_and_bad_layouts_fail_with_a_clear_message(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="Download ml-100k.zip"):
        movielens.read_movielens(str(tmp_path))
    _write(str(tmp_path / "a"), [[1, 1, 6, 100]])
    with pytest.raises(ValueError, match=r"1 rating\(s\) not in 1..5"):
        movielens.read_movielens(str(tmp_path / "a"))
    _write(str(tmp_path / "b"), [[3, 1, 4, 100]])
    with pytest.raises(ValueError, match="missing from u.user"):
        movielens.read_movielens(str(tmp_path / "b"))
    _write(str(tmp_path / "c"), [[1, 1, 4, 100]], users=[["1", "24", "M", "technician"]])
    with pytest.raises(ValueError, match="expected 5 columns, found 4"):
        movielens.read_movielens(str(tmp_path / "c"))
    assert movielens.main(["--raw-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "error: MovieLens 100K files not found" in capsys.readouterr().err
