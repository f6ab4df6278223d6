"""Small shared helpers for the model tests (tiny dims, tiny vocabularies)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from eliverec.config import Settings, load_settings
from eliverec.features.batch import random_batch
from tests.conftest import PARAMS

SEQ_LEN = 10


@lru_cache(maxsize=1)
def base_settings() -> Settings:
    return load_settings("tiny", params=PARAMS)


def small_vocab() -> dict[str, int]:
    return {k: min(int(v), 40) for k, v in base_settings().features.vocab.items()}


def settings_for(name: str = "eliverec", **model: Any) -> Settings:
    """Tiny settings with ``model.name`` and other model fields replaced (validated)."""
    s = base_settings()
    cfg = type(s.model).model_validate({**s.model.model_dump(), "name": name, **model})
    return s.model_copy(update={"model": cfg})


def batch(size: int = 16, seed: int = 0, seq_len: int = SEQ_LEN) -> dict:
    return random_batch(small_vocab(), size, seq_len, seed=seed)
