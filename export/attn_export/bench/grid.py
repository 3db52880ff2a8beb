"""Request grids for the latency benchmark: which (batch, seq_len, num_candidates) points to time."""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

from ..errors import UsageError

__all__ = [
    "GridPoint",
    "QUICK_GRID",
    "FULL_GRID",
    "DEFAULT_AXIS_VALUES",
    "build_grid",
    "fit_grid_to_model",
    "parse_int_list",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class GridPoint:
    """One request shape: `batch` users, `seq_len` history slots each, `num_candidates` per user."""

    batch: int
    seq_len: int
    num_candidates: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GridPoint":
        return cls(int(data["batch"]), int(data["seq_len"]), int(data["num_candidates"]))

    def label(self) -> str:
        return f"b{self.batch}/L{self.seq_len}/c{self.num_candidates}"


def _full_grid() -> tuple[GridPoint, ...]:
    online = [GridPoint(1, seq_len, count) for seq_len in (20, 50, 200, 1000) for count in (1, 100, 500, 1000)]
    offline = [GridPoint(32, 50, 1)]  # offline scoring: many users, one candidate each
    return tuple(online + offline)


# Online ranking is batch 1 with many candidates; offline scoring is batch 32 with one candidate each.
FULL_GRID: tuple[GridPoint, ...] = _full_grid()

# A handful of points that span both axes, so a default run takes about a minute on 2 cores.
QUICK_GRID: tuple[GridPoint, ...] = (
    GridPoint(1, 20, 1),
    GridPoint(1, 50, 100),
    GridPoint(1, 200, 100),
    GridPoint(1, 50, 1000),
    GridPoint(32, 50, 1),
)

# Values an axis takes when the caller sets some axes but not this one.
DEFAULT_AXIS_VALUES = {"batch": (1,), "seq_len": (50,), "num_candidates": (100,)}


def parse_int_list(option: str, text: str | None) -> list[int] | None:
    """Parse "20,50,200" into [20, 50, 200]; None stays None. UsageError on bad or non-positive values."""
    if text is None:
        return None
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise UsageError(
                f"{option} expects comma-separated positive integers such as 20,50,200; received {text!r}."
            ) from None
        if value < 1:
            raise UsageError(f"{option} values must be positive integers; received {value} in {text!r}.")
        values.append(value)
    if not values:
        raise UsageError(f"{option} is empty; give at least one value, for example {option} 50.")
    return sorted(set(values))


def build_grid(
    full: bool = False,
    batch: Sequence[int] | None = None,
    seq_len: Sequence[int] | None = None,
    num_candidates: Sequence[int] | None = None,
) -> list[GridPoint]:
    """Return the points to time.

    With no axis given: QUICK_GRID, or FULL_GRID when `full`. With any axis given, the grid is the
    Cartesian product of the given axes, and an axis left out takes DEFAULT_AXIS_VALUES.
    """
    if batch is None and seq_len is None and num_candidates is None:
        return list(FULL_GRID if full else QUICK_GRID)
    axes: Iterable[tuple[int, int, int]] = itertools.product(
        batch or DEFAULT_AXIS_VALUES["batch"],
        seq_len or DEFAULT_AXIS_VALUES["seq_len"],
        num_candidates or DEFAULT_AXIS_VALUES["num_candidates"],
    )
    return sorted(GridPoint(*values) for values in axes)


def fit_grid_to_model(
    points: Sequence[GridPoint], max_seq_len: int | None
) -> tuple[list[GridPoint], list[dict[str, Any]]]:
    """Split `points` into those the model accepts and skipped ones with the reason.

    A model with a `max_seq_len` (for example learned positions) rejects longer histories, so
    those points cannot be timed on it.
    """
    kept, skipped = [], []
    for point in points:
        if max_seq_len is not None and point.seq_len > max_seq_len:
            reason = f"seq_len {point.seq_len} exceeds the model's max_seq_len {max_seq_len}"
            logger.warning("Skipping point %s: %s", point.label(), reason)
            skipped.append({**point.to_dict(), "reason": reason})
        else:
            kept.append(point)
    return kept, skipped
