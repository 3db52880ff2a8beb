"""Training tests: real torch training on synthetic data and a slice of MovieLens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attn_models import RankerConfig, TargetAttentionRanker
from attn_models.data import (
    MOVIELENS_DIR_ENV,
    heldout_requests,
    leave_last_out_split,
    load_movielens,
    make_synthetic,
    movielens_dir_from_env,
)
from attn_models.train import TrainConfig, evaluate_ranker, train_ranker


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(num_users=300, num_items=400, seq_len_range=(10, 30), num_topics=10, seed=0)


def small_ranker_config(vocab_size: int) -> RankerConfig:
    return RankerConfig(vocab_size=vocab_size, embed_dim=16, mlp_hidden=(32,))


def quick_train_config(**overrides) -> TrainConfig:
    settings = dict(epochs=8, batch_size=128, lr=1e-2, max_seq_len=20, threads=1, eval_num_negatives=50)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_synthetic_training_beats_popularity(synthetic):
    result = train_ranker(synthetic, small_ranker_config(synthetic.vocab_size), quick_train_config())
    evaluation = result.evaluation

    assert evaluation.model_auc > evaluation.popularity_auc + 0.05
    assert evaluation.model_gauc > evaluation.popularity_gauc + 0.05
    assert evaluation.num_requests == 300
    assert evaluation.num_candidates == 51


def test_training_result_contents(synthetic):
    steps = []
    config = quick_train_config(epochs=2, max_train_examples=1000)
    result = train_ranker(
        synthetic,
        small_ranker_config(synthetic.vocab_size),
        config,
        progress=lambda step, total, loss: steps.append((step, total, loss)),
    )

    assert not result.model.training
    assert [stats.epoch for stats in result.history] == [1, 2]
    assert result.best_epoch in (1, 2)
    assert len(steps) == 2 * 8  # ceil(1000 / 128) steps per epoch
    assert [step for step, _, _ in steps] == list(range(1, 17))
    assert all(total == 16 for _, total, _ in steps)
    assert all(np.isfinite(loss) for _, _, loss in steps)
    counts = leave_last_out_split(synthetic).train.item_counts()
    np.testing.assert_array_equal(result.popularity_counts, counts)


def test_training_is_seeded(synthetic):
    config = quick_train_config(epochs=1, max_train_examples=500, seed=3)
    first = train_ranker(synthetic, small_ranker_config(synthetic.vocab_size), config)
    second = train_ranker(synthetic, small_ranker_config(synthetic.vocab_size), config)

    for name, tensor in first.model.state_dict().items():
        torch.testing.assert_close(tensor, second.model.state_dict()[name], rtol=0, atol=0)
    assert first.evaluation == second.evaluation


def test_training_restores_threads(synthetic):
    before = torch.get_num_threads()
    config = quick_train_config(epochs=1, max_train_examples=200, threads=1)
    train_ranker(synthetic, small_ranker_config(synthetic.vocab_size), config)

    assert torch.get_num_threads() == before


@pytest.mark.parametrize("loss", ["softmax", "bce"])
def test_training_losses_run(synthetic, loss):
    config = quick_train_config(epochs=1, max_train_examples=300, loss=loss)
    result = train_ranker(synthetic, small_ranker_config(synthetic.vocab_size), config)

    assert np.isfinite(result.history[0].mean_loss)


def test_training_rejects_small_vocab(synthetic):
    with pytest.raises(ValueError, match="vocab_size"):
        train_ranker(synthetic, small_ranker_config(synthetic.vocab_size - 1), quick_train_config())


def test_training_rejects_short_model_seq_len(synthetic):
    ranker_config = RankerConfig(
        vocab_size=synthetic.vocab_size, embed_dim=16, positional="learned", max_seq_len=10
    )
    with pytest.raises(ValueError, match="max_seq_len"):
        train_ranker(synthetic, ranker_config, quick_train_config(max_seq_len=20))


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="hinge")


def test_train_config_round_trip():
    config = TrainConfig(epochs=3, max_train_examples=10)

    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"epoch": 3})


def test_evaluate_untrained_model_near_chance(synthetic):
    torch.manual_seed(0)
    model = TargetAttentionRanker(small_ranker_config(synthetic.vocab_size))
    requests = heldout_requests(synthetic, "test", num_negatives=50, max_seq_len=20, seed=0)
    train = leave_last_out_split(synthetic).train
    evaluation = evaluate_ranker(model, requests, train)

    assert 0.35 < evaluation.model_auc < 0.65
    assert evaluation.popularity_auc > 0.6  # the generator skews popularity
    assert model.training  # evaluate_ranker restores the mode


@pytest.fixture
def movielens_dir() -> Path:
    directory = movielens_dir_from_env()
    if directory is None:
        pytest.skip(f"{MOVIELENS_DIR_ENV} is not set")
    return directory


@pytest.mark.movielens
def test_movielens_slice_beats_popularity(movielens_dir):
    dataset = load_movielens(movielens_dir, max_users=300)
    ranker_config = RankerConfig(vocab_size=dataset.vocab_size, embed_dim=16, mlp_hidden=(32,))
    config = TrainConfig(epochs=6, batch_size=256, max_seq_len=20, threads=1, eval_num_negatives=100)
    result = train_ranker(dataset, ranker_config, config)
    evaluation = result.evaluation

    assert evaluation.num_requests == 300
    # Measured with torch 2.13 CPU: model AUC 0.835, GAUC 0.816, popularity 0.777 for both.
    assert evaluation.model_auc > evaluation.popularity_auc + 0.02
    assert evaluation.model_gauc > evaluation.popularity_gauc
