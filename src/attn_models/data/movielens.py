"""Loader for MovieLens ratings.csv files (userId,movieId,rating,timestamp)."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np

from attn_models.data.sequences import SequenceDataset

logger = logging.getLogger(__name__)

__all__ = ["MOVIELENS_DIR_ENV", "load_movielens", "movielens_dir_from_env"]

MOVIELENS_DIR_ENV = "ATTN_MOVIELENS_DIR"
RATINGS_FILE = "ratings.csv"
RATINGS_COLUMNS = ("userId", "movieId", "rating", "timestamp")


def movielens_dir_from_env() -> Path | None:
    """Return the directory named by ATTN_MOVIELENS_DIR, or None if it is unset or empty.

    The path is not checked here, so that load_movielens reports a missing directory.
    """
    value = os.environ.get(MOVIELENS_DIR_ENV, "").strip()
    return Path(value) if value else None


def read_ratings(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read ratings.csv into (user_ids int64, movie_ids int64, ratings float64, timestamps int64).

    Raises:
        ValueError: if the header lacks a required column or a row cannot be parsed.
    """
    users: list[int] = []
    movies: list[int] = []
    ratings: list[float] = []
    timestamps: list[int] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty, expected the header {','.join(RATINGS_COLUMNS)}.")
        missing = [name for name in RATINGS_COLUMNS if name not in header]
        if missing:
            raise ValueError(
                f"{path} lacks the columns {missing}: its header is {header}, expected "
                f"{','.join(RATINGS_COLUMNS)}. Point {MOVIELENS_DIR_ENV} at a MovieLens "
                "directory in the ml-latest format."
            )
        columns = [header.index(name) for name in RATINGS_COLUMNS]
        for line_number, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                users.append(int(row[columns[0]]))
                movies.append(int(row[columns[1]]))
                ratings.append(float(row[columns[2]]))
                timestamps.append(int(row[columns[3]]))
            except (IndexError, ValueError) as error:
                raise ValueError(
                    f"{path}, line {line_number}: cannot parse {row!r} as "
                    f"{','.join(RATINGS_COLUMNS)} ({error}). Fix or remove that line."
                ) from error
    return (
        np.asarray(users, dtype=np.int64),
        np.asarray(movies, dtype=np.int64),
        np.asarray(ratings, dtype=np.float64),
        np.asarray(timestamps, dtype=np.int64),
    )


def load_movielens(
    directory: str | Path,
    min_rating: float | None = None,
    max_users: int | None = None,
) -> SequenceDataset:
    """Load ratings.csv from a MovieLens directory as per-user item sequences.

    Each user's movies are ordered by timestamp, and rows with the same timestamp by
    movieId, so the order does not depend on the row order of the file. Movie ids are
    remapped to 1..num_items in ascending movieId order, over the rows that are kept.

    Args:
        directory: directory that contains ratings.csv, for example the one named by
            ATTN_MOVIELENS_DIR.
        min_rating: if given, keep only ratings >= min_rating (stars, 0.5 to 5.0).
        max_users: if given, keep the max_users users with the smallest userId.

    Raises:
        FileNotFoundError: if the directory or ratings.csv does not exist.
        ValueError: if the file is malformed, max_users < 1, or no rating is left
            after filtering.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"MovieLens directory not found: {directory}. Set {MOVIELENS_DIR_ENV} to the "
            "directory that contains ratings.csv (for example ml-latest-small)."
        )
    path = directory / RATINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"MovieLens ratings file not found: {path}. Set {MOVIELENS_DIR_ENV} to a "
            f"directory that contains {RATINGS_FILE} with columns "
            f"{','.join(RATINGS_COLUMNS)}."
        )
    if max_users is not None and max_users < 1:
        raise ValueError(f"max_users must be at least 1 or None, got {max_users}.")

    users, movies, ratings, timestamps = read_ratings(path)
    keep = np.ones(users.size, dtype=bool)
    if min_rating is not None:
        keep &= ratings >= min_rating
    if max_users is not None:
        kept_users = np.unique(users[keep])[:max_users]
        keep &= np.isin(users, kept_users)
    users, movies, timestamps = users[keep], movies[keep], timestamps[keep]
    if users.size == 0:
        raise ValueError(
            f"no ratings left in {path} with min_rating={min_rating} and "
            f"max_users={max_users}. Lower min_rating or raise max_users."
        )

    original_items, remapped = np.unique(movies, return_inverse=True)
    item_ids = remapped.astype(np.int64) + 1  # 0 stays the padding id

    # lexsort sorts by the last key first: user, then timestamp, then movieId.
    order = np.lexsort((movies, timestamps, users))
    users, item_ids = users[order], item_ids[order]
    unique_users, starts = np.unique(users, return_index=True)
    sequences = np.split(item_ids, starts[1:])

    dataset = SequenceDataset(
        sequences=list(sequences),
        num_items=int(original_items.size),
        item_id_map={int(original): index + 1 for index, original in enumerate(original_items)},
        source=f"movielens:{directory.name} (min_rating={min_rating}, max_users={max_users})",
        user_ids=unique_users,
    )
    logger.info(
        "loaded %s: %d users, %d items, %d interactions",
        path,
        dataset.num_users,
        dataset.num_items,
        dataset.num_interactions,
    )
    return dataset
