"""Synthetic user sequences with topic interests, popularity skew and topic drift.

Generative process, all from one numpy Generator:

1. Every item belongs to one topic, drawn uniformly. Within a topic, item popularity
   follows a Zipf-like law: weight 1 / rank**popularity_exponent over a random order.
2. Every user has a topic mixture drawn from a Dirichlet(interest_concentration)
   distribution, so a small concentration gives users a few dominant topics.
3. A sequence starts in a topic drawn from the user's mixture. At each later step the
   user stays in the current topic with probability topic_stickiness, else draws a new
   topic from the mixture. The item is then drawn by popularity within the topic, and
   an item the user already has is redrawn a few times.

The next item's topic therefore depends on the user's interests and, more strongly,
on the most recent items. An attention model over the history can learn both, but a
popularity ranking cannot.
"""

from __future__ import annotations

import logging

import numpy as np

from attn_models.data.sequences import SequenceDataset

logger = logging.getLogger(__name__)

__all__ = ["make_synthetic"]

# Redraws of an item that is already in the user's sequence. After them a repeat is
# kept, which only happens for users that exhausted the popular items of a topic.
REPEAT_REDRAWS = 8


def make_synthetic(
    num_users: int = 1000,
    num_items: int = 2000,
    seq_len_range: tuple[int, int] = (10, 60),
    num_topics: int = 20,
    seed: int = 0,
    interest_concentration: float = 0.2,
    topic_stickiness: float = 0.8,
    popularity_exponent: float = 1.0,
) -> SequenceDataset:
    """Generate a SequenceDataset from the topic model described in the module docstring.

    Args:
        num_users: number of sequences, >= 1.
        num_items: number of items, >= num_topics. Ids are 1..num_items.
        seq_len_range: inclusive (min, max) sequence length, 1 <= min <= max. Lengths
            are uniform in this range.
        num_topics: number of latent topics, >= 1.
        seed: seed of the numpy Generator. The same arguments return identical data.
        interest_concentration: Dirichlet concentration of user topic mixtures, > 0.
        topic_stickiness: probability in [0, 1] of keeping the current topic per step.
        popularity_exponent: Zipf exponent of item popularity within a topic, >= 0.

    Raises:
        ValueError: for an argument outside the ranges above.
    """
    min_len, max_len = seq_len_range
    checks = [
        (num_users >= 1, f"num_users must be at least 1, got {num_users}"),
        (num_topics >= 1, f"num_topics must be at least 1, got {num_topics}"),
        (
            num_items >= num_topics,
            f"num_items must be at least num_topics={num_topics}, got {num_items}",
        ),
        (
            1 <= min_len <= max_len,
            f"seq_len_range must satisfy 1 <= min <= max, got {seq_len_range}",
        ),
        (
            interest_concentration > 0,
            f"interest_concentration must be > 0, got {interest_concentration}",
        ),
        (
            0.0 <= topic_stickiness <= 1.0,
            f"topic_stickiness must be in [0, 1], got {topic_stickiness}",
        ),
        (
            popularity_exponent >= 0,
            f"popularity_exponent must be >= 0, got {popularity_exponent}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"{message}. Pass a value in the documented range.")

    rng = np.random.default_rng(seed)
    # Every topic gets at least one item: the first num_topics items cover them all.
    item_topics = np.concatenate(
        [np.arange(num_topics), rng.integers(0, num_topics, size=num_items - num_topics)]
    )
    item_topics = rng.permutation(item_topics)  # [num_items], topic of item id i + 1
    cdf, items_by_topic = topic_popularity_cdf(item_topics, num_topics, popularity_exponent, rng)

    interests = rng.dirichlet(np.full(num_topics, interest_concentration), size=num_users)
    interest_cdf = np.cumsum(interests, axis=1)  # [num_users, num_topics]
    lengths = rng.integers(min_len, max_len + 1, size=num_users)  # [num_users]

    sequences = np.zeros((num_users, max_len), dtype=np.int64)  # [num_users, max_len]
    # NOTE: this mask takes num_users * (num_items + 1) bytes, fine for the default sizes
    # but about 1 GB at 10k users and 100k items.
    seen = np.zeros((num_users, num_items + 1), dtype=bool)  # [num_users, vocab_size]
    users = np.arange(num_users)
    topics = draw_topics(interest_cdf, rng)  # [num_users]
    for step in range(max_len):
        if step > 0:
            switch = rng.random(num_users) >= topic_stickiness
            topics = np.where(switch, draw_topics(interest_cdf, rng), topics)
        items = draw_items(topics, cdf, items_by_topic, rng)
        for _ in range(REPEAT_REDRAWS):
            repeated = seen[users, items]
            if not repeated.any():
                break
            redrawn = draw_items(topics[repeated], cdf, items_by_topic, rng)
            items[repeated] = redrawn
        seen[users, items] = True
        sequences[:, step] = items

    dataset = SequenceDataset(
        sequences=[sequences[user, : lengths[user]] for user in range(num_users)],
        num_items=num_items,
        item_id_map={},
        source=(
            f"synthetic(num_users={num_users}, num_items={num_items}, "
            f"seq_len_range={tuple(seq_len_range)}, num_topics={num_topics}, seed={seed})"
        ),
    )
    logger.info(
        "generated %s: %d interactions", dataset.source, dataset.num_interactions
    )
    return dataset


def topic_popularity_cdf(
    item_topics: np.ndarray,
    num_topics: int,
    popularity_exponent: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Build a stacked per-topic popularity CDF for vectorized item draws.

    Returns (cdf float64 [num_items], item ids int64 [num_items]), both sorted by topic.
    Within topic k the cdf rises from just above k to exactly k + 1, so the item for
    topic k and a uniform u is found by searching k + u.
    """
    items_by_topic = np.argsort(item_topics, kind="stable") + 1  # item ids, topic-major
    topics_sorted = item_topics[items_by_topic - 1]
    weights = np.empty(items_by_topic.size, dtype=np.float64)
    for topic in range(num_topics):
        members = np.flatnonzero(topics_sorted == topic)
        ranks = rng.permutation(members.size) + 1
        topic_weights = 1.0 / ranks.astype(np.float64) ** popularity_exponent
        topic_cdf = np.cumsum(topic_weights) / topic_weights.sum()
        topic_cdf[-1] = 1.0  # exact, so rounding never leaks a draw into the next topic
        weights[members] = topic_cdf
    cdf = topics_sorted + weights
    return cdf, items_by_topic


def draw_topics(interest_cdf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one topic per row of a [rows, num_topics] CDF."""
    uniform = rng.random((interest_cdf.shape[0], 1))
    topics = (interest_cdf < uniform).sum(axis=1)
    return np.minimum(topics, interest_cdf.shape[1] - 1)


def draw_items(
    topics: np.ndarray,
    cdf: np.ndarray,
    items_by_topic: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw one item per entry of topics, by popularity within the topic."""
    targets = topics + rng.random(topics.size)
    # side="right" skips the previous topic's last entry, which equals topic exactly.
    positions = np.searchsorted(cdf, targets, side="right")
    return items_by_topic[np.minimum(positions, cdf.size - 1)]
