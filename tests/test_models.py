"""Model library tests on real torch modules: worked example, masking, padding, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attn_models import (
    DINAttention,
    RankerConfig,
    TargetAttention,
    TargetAttentionRanker,
    load_checkpoint,
    masked_softmax,
    recency_positions,
    save_checkpoint,
)

VOCAB = 60


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _worked_example():
    rng = np.random.default_rng(7)
    history = rng.normal(size=(3, 4)).astype(np.float32)  # h1, h2, h3
    candidate = rng.normal(size=4).astype(np.float32)  # e_c
    return history, candidate


def test_worked_example_plain_dot_product():
    history, candidate = _worked_example()
    attention = TargetAttention(4, project_query_key=False)
    u, weights = attention(torch.from_numpy(history)[None], torch.ones(1, 3, dtype=torch.bool),
                           torch.from_numpy(candidate)[None, None], return_weights=True)

    s = history @ candidate / np.sqrt(4)
    a = _softmax(s)
    expected = a[0] * history[0] + a[1] * history[1] + a[2] * history[2]
    np.testing.assert_allclose(weights[0, 0].detach().numpy(), a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(u[0, 0].detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_worked_example_with_projections():
    history, candidate = _worked_example()
    attention = TargetAttention(4, attention_dim=6, project_query_key=True, project_value=True)
    w_q = attention.query.weight.detach().numpy().T  # [4, 6]
    w_k = attention.key.weight.detach().numpy().T  # [4, 6]
    w_v = attention.value.weight.detach().numpy().T  # [4, 4]
    u = attention(torch.from_numpy(history)[None], torch.ones(1, 3, dtype=torch.bool),
                  torch.from_numpy(candidate)[None, None])

    q = candidate @ w_q
    k = history @ w_k
    v = history @ w_v
    a = _softmax(k @ q / np.sqrt(6))
    expected = a[0] * v[0] + a[1] * v[1] + a[2] * v[2]
    np.testing.assert_allclose(u[0, 0].detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_masked_softmax_empty_row_is_zero():
    scores = torch.randn(2, 3, 5)
    valid = torch.tensor([[False] * 5, [True, True, False, False, False]])[:, None, :]
    weights = masked_softmax(scores, valid)
    assert torch.equal(weights[0], torch.zeros(3, 5))
    assert torch.all(weights[1, :, 2:] == 0)
    torch.testing.assert_close(weights[1].sum(-1), torch.ones(3))


def test_recency_positions_most_recent_is_zero():
    positions = recency_positions(torch.tensor([3, 0, 1]), 4)
    assert positions.tolist() == [[2, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_din_decomposition_matches_concatenation():
    torch.manual_seed(0)
    din = DINAttention(8, hidden=(16, 8))
    history, candidates = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    key_term, values = din.prepare(history)
    _, weights = din.attend(key_term, values, torch.ones(2, 5, dtype=torch.bool), candidates, return_weights=True)
    torch.testing.assert_close(weights, din.concat_logits(history, candidates), rtol=1e-5, atol=1e-5)


VARIANTS = {
    "dot": dict(attention="dot", positional="none", head="dot"),
    "projected": dict(attention="projected", positional="none"),
    "projected_no_value": dict(attention="projected", value_projection=False, head="dot"),
    "multihead": dict(attention="multihead", num_heads=4),
    "learned_positions": dict(attention="multihead", positional="learned", max_seq_len=40),
    "sinusoidal_positions": dict(attention="projected", positional="sinusoidal"),
    "self_attention": dict(attention="multihead", self_attention_blocks=2),
    "din": dict(attention="din"),
    "din_softmax": dict(attention="din", din_softmax=True, head="dot"),
    "mlp_head": dict(attention="dot", head="mlp"),
}


def _model(name: str) -> TargetAttentionRanker:
    torch.manual_seed(0)
    return TargetAttentionRanker(RankerConfig(vocab_size=VOCAB, embed_dim=16, **VARIANTS[name])).eval()


def _batch(rng, batch=4, seq_len=9, num_candidates=6, lengths=None):
    lengths = np.asarray(lengths if lengths is not None else rng.integers(0, seq_len + 1, size=batch))
    ids = rng.integers(1, VOCAB, size=(len(lengths), seq_len))
    ids[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0
    candidates = rng.integers(1, VOCAB, size=(len(lengths), num_candidates))
    return torch.as_tensor(ids), torch.as_tensor(lengths), torch.as_tensor(candidates)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_scores_unchanged_by_extra_padding(name):
    model = _model(name)
    ids, lengths, candidates = _batch(np.random.default_rng(1), lengths=[9, 4, 0, 1])
    base = model(ids, lengths, candidates)
    wider = torch.cat([ids, torch.zeros(4, 11, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(wider, lengths, candidates), base, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_scores_unchanged_by_ids_in_padded_slots(name):
    model = _model(name)
    rng = np.random.default_rng(2)
    ids, lengths, candidates = _batch(rng, lengths=[9, 4, 0, 1])
    noisy = ids.clone()
    padded = torch.arange(9)[None, :] >= lengths[:, None]
    noisy[padded] = torch.as_tensor(rng.integers(1, VOCAB, size=int(padded.sum())))
    torch.testing.assert_close(model(noisy, lengths, candidates), model(ids, lengths, candidates), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_empty_history_scores_equal_zero_interest(name):
    model = _model(name)
    ids, lengths, candidates = _batch(np.random.default_rng(3), lengths=[0, 0], seq_len=5)
    scores = model(ids, lengths, candidates)
    assert torch.isfinite(scores).all()
    embedded = model.item_embedding(candidates)
    zero_interest = torch.zeros(*candidates.shape, model.attention.value_dim)
    torch.testing.assert_close(scores, model.head(zero_interest, embedded), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_candidate_permutation_permutes_scores(name):
    model = _model(name)
    ids, lengths, candidates = _batch(np.random.default_rng(4))
    perm = torch.randperm(candidates.shape[1])
    torch.testing.assert_close(model(ids, lengths, candidates[:, perm]), model(ids, lengths, candidates)[:, perm],
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_batch_rows_independent(name):
    model = _model(name)
    ids, lengths, candidates = _batch(np.random.default_rng(5), batch=5)
    batched = model(ids, lengths, candidates)
    for row in range(5):
        alone = model(ids[row : row + 1], lengths[row : row + 1], candidates[row : row + 1])
        torch.testing.assert_close(alone, batched[row : row + 1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_seq_len_1_and_one_candidate(name):
    model = _model(name)
    ids, lengths, candidates = _batch(np.random.default_rng(6), batch=2, seq_len=1, num_candidates=1, lengths=[1, 0])
    scores = model(ids, lengths, candidates)
    assert scores.shape == (2, 1)
    assert scores.dtype == torch.float32
    assert torch.isfinite(scores).all()


def test_history_encoded_once_per_user():
    model = _model("multihead")
    ids, lengths, candidates = _batch(np.random.default_rng(8), batch=3, seq_len=7, num_candidates=50)
    keys, values, valid = model.encode_user(ids, lengths)
    assert keys.shape[:2] == (3, 7)
    assert values.shape[:2] == (3, 7)
    assert valid.shape == (3, 7)
    torch.testing.assert_close(model.score_candidates(keys, values, valid, candidates), model(ids, lengths, candidates))


def test_padding_row_gets_zero_weight():
    model = _model("projected")
    ids, lengths, candidates = _batch(np.random.default_rng(9), lengths=[9, 3, 0, 5])
    weights = model.attention_weights(ids, lengths, candidates)  # [batch, num_candidates, seq_len]
    padded = (torch.arange(9)[None, :] >= lengths[:, None])[:, None, :].expand_as(weights)
    assert torch.all(weights[padded] == 0)
    torch.testing.assert_close(weights[1].sum(-1), torch.ones(6))


def test_checkpoint_round_trip(tmp_path):
    model = _model("self_attention")
    path = save_checkpoint(tmp_path / "ckpt.pt", model, extra={"note": "test"})
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    ids, lengths, candidates = _batch(np.random.default_rng(10))
    torch.testing.assert_close(loaded(ids, lengths, candidates), model(ids, lengths, candidates))


def test_checkpoint_rejects_foreign_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not an attn-models checkpoint"):
        load_checkpoint(path)


def test_config_rejects_unknown_attention():
    with pytest.raises(ValueError, match="attention must be one of"):
        RankerConfig(vocab_size=10, attention="cosine")


def test_config_json_round_trip():
    config = RankerConfig(vocab_size=10, attention="din", din_hidden=(8, 4))
    assert RankerConfig.from_dict(config.to_dict()) == config
