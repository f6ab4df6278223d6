"""A/B buckets: stable assignment, shares within 1 % over 100k users, durable allocations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from eliverec.errors import DataError
from eliverec.serving.buckets import (
    Allocation,
    allocation_path,
    bucket_of,
    buckets_of,
    load_allocation,
    save_allocation,
    with_share,
)

USERS = [f"u{i}" for i in range(100_000)]


def test_same_user_same_variant_for_an_allocation() -> None:
    a = with_share("exp", "salt-1", 1000, 20)
    again = Allocation.model_validate_json(a.model_dump_json())  # as a restarted service reads it back
    first = [a.variant_of(u) for u in USERS[:2000]]
    assert first == [again.variant_of(u) for u in USERS[:2000]] == [a.variant_of(u) for u in USERS[:2000]]
    assert bucket_of("salt-1", "u7", 1000) == bucket_of("salt-1", "u7", 1000)


@pytest.mark.parametrize("percent", [1, 5, 20, 50])
def test_shares_within_one_percent_of_the_allocation(percent: float) -> None:
    a = with_share("exp", "salt-1", 1000, percent)
    b = buckets_of(a.salt, USERS, a.buckets)
    share = float(a.lookup[b].mean())
    assert abs(share - percent / 100) < 0.01, share
    assert np.bincount(b, minlength=1000).min() > 50  # every bucket is used


def test_growing_share_keeps_challenger_users_and_salt_reshuffles() -> None:
    small, big = with_share("e", "s", 1000, 5), with_share("e", "s", 1000, 20)
    b = buckets_of("s", USERS[:20000], 1000)
    assert np.all(big.lookup[b][small.lookup[b] == 1] == 1)
    other = buckets_of("another-salt", USERS[:20000], 1000)
    assert np.mean(b == other) < 0.01


def test_invalid_allocations_are_refused() -> None:
    with pytest.raises(ValidationError, match="overlaps"):
        Allocation(experiment="e", salt="s", buckets=100, ranges=[
            {"start": 0, "end": 10, "variant": "challenger"}, {"start": 5, "end": 20, "variant": "champion"}])
    with pytest.raises(ValidationError, match="start < end <= buckets"):
        Allocation(experiment="e", salt="s", buckets=100, ranges=[{"start": 0, "end": 101, "variant": "challenger"}])
    with pytest.raises(ValidationError):
        Allocation(experiment="e", salt="s", buckets=100, ranges=[{"start": 0, "end": 5, "variant": "treatment"}])


def test_allocation_is_stored_durably_with_history(tmp_path: Path) -> None:
    path = allocation_path(tmp_path)
    default = with_share("e", "s", 1000, 0)
    assert load_allocation(path, default) == default
    for pct in (1, 5):
        save_allocation(path, with_share("e", "s", 1000, pct, by="test", reason=f"{pct}%"))
    back = load_allocation(path, default)
    assert back.share() == pytest.approx(0.05) and back.updated_by == "test"
    assert len((path.parent / "allocation_history.jsonl").read_text().splitlines()) == 2
    assert not list(path.parent.glob(".*tmp*"))  # the atomic write left no temporary file
    path.write_text("{not json")
    with pytest.raises(DataError, match="not a valid allocation"):
        load_allocation(path, default)


def test_service_refuses_a_public_address_with_the_laptop_token(monkeypatch) -> None:
    import pytest

    from eliverec.config import load_settings
    from eliverec.errors import EliverecError
    from eliverec.serving.app import serve
    from tests.conftest import PARAMS

    monkeypatch.delenv("ELIVEREC_ADMIN_TOKEN", raising=False)
    with pytest.raises(EliverecError, match="ELIVEREC_ADMIN_TOKEN"):
        serve(load_settings("tiny", params=PARAMS), host="0.0.0.0")
