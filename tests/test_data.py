"""Tests of sequences, splits, training examples, held-out requests and the loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attn_models.data import (
    MOVIELENS_DIR_ENV,
    RankingRequests,
    SequenceDataset,
    build_training_examples,
    heldout_requests,
    leave_last_out_split,
    load_movielens,
    make_synthetic,
    movielens_dir_from_env,
    pad_histories,
)

# Rows in file order: user 7 has three items at timestamp 100, listed out of movieId
# order, so only the movieId tie-break makes the sequence deterministic.
RATINGS_CSV = """userId,movieId,rating,timestamp
7,50,4.0,100
7,30,3.5,100
7,900,5.0,90
7,40,2.0,100
3,30,4.0,10
3,10,1.0,20
3,900,4.5,5
"""


def write_ratings(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ratings.csv").write_text(text, encoding="utf-8")
    return directory


def tiny_dataset() -> SequenceDataset:
    return SequenceDataset(
        sequences=[
            np.array([1, 2, 3, 4, 5]),
            np.array([6, 7]),
            np.array([2, 4, 6]),
            np.array([8, 9, 10, 1, 3, 5, 7]),
        ],
        num_items=12,
        source="tiny",
    )


# --- MovieLens loader -------------------------------------------------------------


def test_movielens_tie_break_by_movie_id(tmp_path):
    directory = write_ratings(tmp_path / "a", RATINGS_CSV)
    dataset = load_movielens(directory)
    inverse = {new: old for old, new in dataset.item_id_map.items()}

    assert dataset.user_ids.tolist() == [3, 7]
    assert [inverse[i] for i in dataset.sequences[0]] == [900, 30, 10]
    assert [inverse[i] for i in dataset.sequences[1]] == [900, 30, 40, 50]


def test_movielens_order_ignores_row_order(tmp_path):
    header, *rows = RATINGS_CSV.strip().splitlines()
    shuffled = "\n".join([header, *reversed(rows)]) + "\n"
    first = load_movielens(write_ratings(tmp_path / "a", RATINGS_CSV))
    second = load_movielens(write_ratings(tmp_path / "b", shuffled))

    assert dict(first.item_id_map) == dict(second.item_id_map)
    for a, b in zip(first.sequences, second.sequences):
        np.testing.assert_array_equal(a, b)


def test_movielens_remap_keeps_zero_for_padding(tmp_path):
    dataset = load_movielens(write_ratings(tmp_path / "a", RATINGS_CSV))

    assert sorted(dataset.item_id_map) == [10, 30, 40, 50, 900]
    assert sorted(dataset.item_id_map.values()) == [1, 2, 3, 4, 5]
    assert dataset.num_items == 5
    assert dataset.vocab_size == 6
    assert all(seq.min() >= 1 for seq in dataset.sequences)


def test_movielens_filters(tmp_path):
    directory = write_ratings(tmp_path / "a", RATINGS_CSV)
    by_rating = load_movielens(directory, min_rating=4.0)
    by_user = load_movielens(directory, max_users=1)

    assert by_rating.num_interactions == 4
    assert by_rating.num_items == 3  # movies 40 and 10 have no rating >= 4.0
    assert by_user.user_ids.tolist() == [3]
    assert by_user.num_items == 3


def test_movielens_missing_directory_names_env(tmp_path):
    with pytest.raises(FileNotFoundError, match=MOVIELENS_DIR_ENV) as info:
        load_movielens(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


def test_movielens_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="ratings.csv") as info:
        load_movielens(tmp_path)
    assert MOVIELENS_DIR_ENV in str(info.value)


def test_movielens_bad_row_names_line(tmp_path):
    directory = write_ratings(tmp_path / "a", "userId,movieId,rating,timestamp\n1,2,x,3\n")
    with pytest.raises(ValueError, match="line 2"):
        load_movielens(directory)


def test_movielens_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(MOVIELENS_DIR_ENV, str(tmp_path))
    assert movielens_dir_from_env() == tmp_path
    monkeypatch.setenv(MOVIELENS_DIR_ENV, "")
    assert movielens_dir_from_env() is None
    monkeypatch.delenv(MOVIELENS_DIR_ENV)
    assert movielens_dir_from_env() is None


@pytest.fixture
def movielens_dir() -> Path:
    directory = movielens_dir_from_env()
    if directory is None:
        pytest.skip(f"{MOVIELENS_DIR_ENV} is not set")
    return directory


@pytest.mark.movielens
def test_movielens_real_file_shape(movielens_dir):
    dataset = load_movielens(movielens_dir)

    assert dataset.num_users == 610
    assert dataset.num_interactions == 100836
    assert dataset.num_items == 9724
    assert all(seq.min() >= 1 and seq.max() <= dataset.num_items for seq in dataset.sequences)


# --- SequenceDataset and split ------------------------------------------------------


def test_dataset_rejects_padding_id():
    with pytest.raises(ValueError, match="outside 1..3"):
        SequenceDataset(sequences=[np.array([1, 0, 2])], num_items=3)


def test_split_sizes_and_targets():
    split = leave_last_out_split(tiny_dataset())

    assert split.eval_users.tolist() == [0, 2, 3]
    assert split.test_targets.tolist() == [5, 6, 7]
    assert split.validation_targets.tolist() == [4, 4, 5]
    assert split.train.sequences[0].tolist() == [1, 2, 3]
    assert split.train.sequences[1].tolist() == [6, 7]  # too short: kept for training
    assert split.train.sequences[2].tolist() == [2]
    assert split.train.num_interactions == 17 - 2 * 3


def test_split_heldout_history():
    split = leave_last_out_split(tiny_dataset())

    assert split.heldout_history(0, "validation").tolist() == [1, 2, 3]
    assert split.heldout_history(0, "test").tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="validation"):
        split.heldout_history(0, "train")


# --- padding ------------------------------------------------------------------------


def test_pad_histories_right_pads():
    ids, lengths = pad_histories([[3, 4, 5], [], [7]])

    assert ids.dtype == np.int64
    assert lengths.dtype == np.int64
    assert ids.tolist() == [[3, 4, 5], [0, 0, 0], [7, 0, 0]]
    assert lengths.tolist() == [3, 0, 1]


def test_pad_histories_keeps_most_recent():
    ids, lengths = pad_histories([[1, 2, 3, 4], [5]], max_seq_len=2)

    assert ids.tolist() == [[3, 4], [5, 0]]
    assert lengths.tolist() == [2, 1]


def test_pad_histories_all_empty_has_one_column():
    ids, lengths = pad_histories([[], []])

    assert ids.shape == (2, 1)
    assert lengths.tolist() == [0, 0]


def test_pad_histories_rejects_padding_id():
    with pytest.raises(ValueError, match=r"histories\[1\]"):
        pad_histories([[1], [2, 0]])


# --- training examples --------------------------------------------------------------


def test_examples_same_seed_same_arrays():
    train = leave_last_out_split(make_synthetic(num_users=50, num_items=100, seed=1)).train
    first = build_training_examples(train, max_seq_len=8, num_negatives=3, rng=5)
    second = build_training_examples(train, max_seq_len=8, num_negatives=3, rng=5)
    third = build_training_examples(train, max_seq_len=8, num_negatives=3, rng=6)

    for name in ("history_ids", "history_lengths", "positive_ids", "negative_ids", "user_rows"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert not np.array_equal(first.negative_ids, third.negative_ids)


def test_examples_content():
    dataset = SequenceDataset(sequences=[np.array([4, 5, 6, 7]), np.array([9])], num_items=9)
    examples = build_training_examples(dataset, max_seq_len=2, num_negatives=2, rng=0)

    assert examples.history_ids.tolist() == [[4, 0], [4, 5], [5, 6]]
    assert examples.history_lengths.tolist() == [1, 2, 2]
    assert examples.positive_ids.tolist() == [5, 6, 7]
    assert examples.user_rows.tolist() == [0, 0, 0]
    assert examples.negative_ids.shape == (3, 2)


def test_examples_negatives_not_in_history():
    train = leave_last_out_split(make_synthetic(num_users=80, num_items=60, seed=2)).train
    examples = build_training_examples(train, max_seq_len=10, num_negatives=5, rng=0)

    for row in range(len(examples)):
        user_items = set(train.sequences[examples.user_rows[row]].tolist())
        assert not user_items.intersection(examples.negative_ids[row].tolist())
    assert examples.negative_ids.min() >= 1
    assert examples.negative_ids.max() <= train.num_items


def test_examples_max_examples_subset():
    train = leave_last_out_split(make_synthetic(num_users=40, num_items=100, seed=3)).train
    full = build_training_examples(train, max_seq_len=6, num_negatives=1, rng=0)
    subset = build_training_examples(train, max_seq_len=6, num_negatives=1, rng=0, max_examples=25)

    assert len(subset) == 25
    full_pairs = set(zip(full.user_rows.tolist(), full.positive_ids.tolist()))
    assert set(zip(subset.user_rows.tolist(), subset.positive_ids.tolist())) <= full_pairs


# --- held-out requests --------------------------------------------------------------


def test_heldout_requests_shapes_and_dtypes():
    dataset = make_synthetic(num_users=30, num_items=200, seed=4)
    requests = heldout_requests(dataset, "test", num_negatives=20, max_seq_len=12, seed=0)

    assert isinstance(requests, RankingRequests)
    assert requests.history_ids.dtype == np.int64
    assert requests.history_lengths.dtype == np.int64
    assert requests.candidate_ids.dtype == np.int64
    assert requests.labels.dtype == np.float32
    assert requests.history_ids.shape == (30, 12)
    assert requests.candidate_ids.shape == (30, 21)
    assert requests.labels.shape == (30, 21)
    assert requests.history_lengths.max() <= 12


def test_heldout_requests_labels_mark_target():
    dataset = make_synthetic(num_users=30, num_items=200, seed=4)
    split = leave_last_out_split(dataset)
    for name, targets in (("test", split.test_targets), ("validation", split.validation_targets)):
        requests = heldout_requests(dataset, name, num_negatives=20, seed=0)

        np.testing.assert_array_equal(requests.labels.sum(axis=1), np.ones(30))
        positives = requests.candidate_ids[requests.labels == 1.0]
        np.testing.assert_array_equal(positives, targets)


def test_heldout_requests_candidates_valid():
    dataset = make_synthetic(num_users=30, num_items=200, seed=4)
    requests = heldout_requests(dataset, "test", num_negatives=20, seed=0)

    for row in range(len(requests)):
        candidates = requests.candidate_ids[row]
        negatives = candidates[requests.labels[row] == 0.0]
        assert np.unique(candidates).size == candidates.size
        assert not set(dataset.sequences[row].tolist()).intersection(negatives.tolist())
    # The positive is not always in the same column.
    assert np.unique(np.argmax(requests.labels, axis=1)).size > 1


def test_heldout_requests_histories():
    dataset = tiny_dataset()
    test = heldout_requests(dataset, "test", num_negatives=3, max_seq_len=3, seed=0)
    validation = heldout_requests(dataset, "validation", num_negatives=3, max_seq_len=3, seed=0)

    assert test.user_ids.tolist() == [0, 2, 3]
    assert test.history_ids.tolist() == [[2, 3, 4], [2, 4, 0], [1, 3, 5]]
    assert test.history_lengths.tolist() == [3, 2, 3]
    assert validation.history_ids.tolist() == [[1, 2, 3], [2, 0, 0], [10, 1, 3]]


def test_heldout_requests_seeded():
    dataset = make_synthetic(num_users=30, num_items=200, seed=4)
    first = heldout_requests(dataset, "test", num_negatives=10, seed=3)
    second = heldout_requests(dataset, "test", num_negatives=10, seed=3)
    other = heldout_requests(dataset, "test", num_negatives=10, seed=4)

    np.testing.assert_array_equal(first.candidate_ids, second.candidate_ids)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert not np.array_equal(first.candidate_ids, other.candidate_ids)


def test_heldout_requests_max_users_is_prefix():
    dataset = make_synthetic(num_users=30, num_items=200, seed=4)
    requests = heldout_requests(dataset, "test", num_negatives=5, max_users=7, seed=0)

    assert len(requests) == 7
    assert requests.user_ids.tolist() == list(range(7))


def test_heldout_requests_too_many_negatives():
    dataset = SequenceDataset(sequences=[np.array([1, 2, 3])], num_items=5)
    with pytest.raises(ValueError, match="num_negatives"):
        heldout_requests(dataset, "test", num_negatives=3)


def test_ranking_requests_rejects_wrong_dtype():
    with pytest.raises(ValueError, match="history_lengths"):
        RankingRequests(
            history_ids=np.zeros((2, 3), dtype=np.int64),
            history_lengths=np.zeros(2, dtype=np.int32),
            candidate_ids=np.ones((2, 4), dtype=np.int64),
            labels=np.zeros((2, 4), dtype=np.float32),
            user_ids=np.arange(2, dtype=np.int64),
        )


# --- synthetic generator ------------------------------------------------------------


def test_synthetic_deterministic():
    first = make_synthetic(num_users=40, num_items=150, seed=9)
    second = make_synthetic(num_users=40, num_items=150, seed=9)
    other = make_synthetic(num_users=40, num_items=150, seed=10)

    assert first.num_users == second.num_users == 40
    for a, b in zip(first.sequences, second.sequences):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first.sequences, other.sequences))


def test_synthetic_ranges():
    dataset = make_synthetic(num_users=100, num_items=300, seq_len_range=(5, 9), num_topics=6)
    lengths = np.array([seq.size for seq in dataset.sequences])

    assert lengths.min() >= 5
    assert lengths.max() <= 9
    assert dataset.vocab_size == 301
    assert min(seq.min() for seq in dataset.sequences) >= 1
    assert max(seq.max() for seq in dataset.sequences) <= 300


def test_synthetic_popularity_skewed():
    counts = make_synthetic(num_users=500, num_items=1000, seed=0).item_counts()[1:]
    top_share = np.sort(counts)[::-1][:100].sum() / counts.sum()

    assert top_share > 0.3  # the top 10% of items get far more than 10% of interactions


def test_synthetic_rejects_bad_range():
    with pytest.raises(ValueError, match="seq_len_range"):
        make_synthetic(seq_len_range=(5, 2))


@pytest.mark.movielens
def test_heldout_requests_on_movielens(movielens_dir):
    dataset = load_movielens(movielens_dir, max_users=50)
    requests = heldout_requests(dataset, "test", num_negatives=100, max_seq_len=50, seed=0)

    assert requests.candidate_ids.shape == (50, 101)
    assert requests.history_ids.shape == (50, 50)
    np.testing.assert_array_equal(requests.labels.sum(axis=1), np.ones(50))
