"""The training batch contract shared by the feature stage, the models and the trainer.

A batch is a ``dict[str, torch.Tensor]`` with these keys (``B`` samples, ``L`` the
sequence length). Hashed ids live in ``[1, vocab)``; ``0`` is padding. Sequences are
left-padded: the most recent event is at index ``L - 1``.

| key             | shape      | dtype   | content                                              |
| --------------- | ---------- | ------- | ---------------------------------------------------- |
| user            | (B,)       | int64   | hashed user id                                       |
| profile         | (B, 4)     | int64   | gender, age_bucket, city_tier, register_bucket       |
| context         | (B, 3)     | int64   | hour, weekday, scene (static context)                |
| position        | (B,)       | int64   | feed position (train with it; a fixed one at serving) |
| channel         | (B, 3)     | int64   | target channel: channel id, anchor, top category     |
| dynamic         | (B, 4)     | float32 | log1p of viewers, revenue_window, #on sale, stats age (min) |
| dynamic_cats    | (B, K)     | int64   | categories of the products on sale (K = DYNAMIC_CATS) |
| product_seq     | (B, L, 3)  | int64   | last L product clicks: product, category, brand      |
| product_len     | (B,)       | int64   | number of real (non-pad) product positions           |
| channel_seq     | (B, L, 3)  | int64   | last L watched channels: channel, anchor, top category |
| channel_len     | (B,)       | int64   | number of real (non-pad) channel positions           |
| watch           | (B,)       | float32 | label: entered and stayed >= min_stay_ms             |
| stay_time       | (B,)       | float32 | label: log1p(stay seconds), 0 if not entered         |
| goods_bag       | (B,)       | float32 | label: goods bag opened in that visit                |
| product_click   | (B,)       | float32 | label: a mounted product clicked in that visit       |

Every model's ``forward(batch)`` returns the same dict (see ``eliverec.models``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

PROFILE_FIELDS: tuple[str, ...] = ("gender", "age_bucket", "city_tier", "register_bucket")
CONTEXT_FIELDS: tuple[str, ...] = ("hour", "weekday", "scene")
CHANNEL_FIELDS: tuple[str, ...] = ("channel", "anchor", "category")
PRODUCT_FIELDS: tuple[str, ...] = ("product", "category", "brand")
DYNAMIC_DENSE: int = 4
DYNAMIC_CATS: int = 8
LABELS: tuple[str, ...] = ("watch", "stay_time", "goods_bag", "product_click")
AUX_TASKS: tuple[str, ...] = ("stay_time", "goods_bag", "product_click")
#: Keys that hold one value for every candidate of a request (one user at one time); the rest vary per candidate.
REQUEST_KEYS: tuple[str, ...] = (
    "user", "profile", "context", "product_seq", "product_len", "channel_seq", "channel_len",
)  # fmt: skip


def task_scores(outputs: Mapping[str, torch.Tensor], has_aux: bool = True) -> dict[str, torch.Tensor]:
    """Network outputs (logits, log1p stay seconds) as task scores: the one reading of a network's outputs.

    ``watch``, ``goods_bag`` and ``product_click`` become probabilities (sigmoid); ``stay_time`` is
    clamped at 0 (log1p seconds). A network without auxiliary heads (``has_aux`` false) predicts no
    in-channel behaviour: its ``goods_bag`` and ``product_click`` scores are 0 and its stay time 0.

    >>> out = {k: torch.zeros(2) for k in LABELS}
    >>> [float(v[0]) for v in task_scores(out).values()], float(task_scores(out, False)["goods_bag"][0])
    ([0.5, 0.0, 0.5, 0.5], 0.0)
    """
    binary = ("watch", "goods_bag", "product_click") if has_aux else ("watch",)
    return {k: torch.sigmoid(outputs[k]) if k in binary else
            (outputs[k].clamp(min=0.0) if has_aux else torch.zeros_like(outputs[k])) for k in LABELS}


def random_batch(
    vocab: Mapping[str, int], batch_size: int, seq_len: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A random batch that follows the contract (for unit tests and benchmarks).

    >>> b = random_batch({"user": 10, "product": 20, "category": 5, "brand": 7, "channel": 9,
    ...                   "anchor": 9, "scene": 3, "gender": 3, "age_bucket": 4, "city_tier": 4,
    ...                   "register_bucket": 4, "hour": 25, "weekday": 8, "position": 9}, 4, 6)
    >>> tuple(b["product_seq"].shape), int(b["product_seq"][b["product_len"] == 0].sum())
    ((4, 6, 3), 0)
    """
    g = torch.Generator().manual_seed(seed)

    def ids(name: str, *shape: int) -> torch.Tensor:
        return torch.randint(1, max(int(vocab[name]), 2), shape, generator=g)

    def seq(fields: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        lens = torch.randint(0, seq_len + 1, (batch_size,), generator=g)
        values = torch.stack([ids(f, batch_size, seq_len) for f in fields], dim=-1)
        pad = torch.arange(seq_len).unsqueeze(0) < (seq_len - lens).unsqueeze(1)  # left padding
        return values.masked_fill(pad.unsqueeze(-1), 0), lens

    product_seq, product_len = seq(PRODUCT_FIELDS)
    channel_seq, channel_len = seq(CHANNEL_FIELDS)
    watch = (torch.rand(batch_size, generator=g) < 0.2).float()
    return {
        "user": ids("user", batch_size),
        "profile": torch.stack([ids(f, batch_size) for f in PROFILE_FIELDS], dim=-1),
        "context": torch.stack([ids(f, batch_size) for f in CONTEXT_FIELDS], dim=-1),
        "position": ids("position", batch_size),
        "channel": torch.stack([ids(f, batch_size) for f in CHANNEL_FIELDS], dim=-1),
        "dynamic": torch.rand(batch_size, DYNAMIC_DENSE, generator=g),
        "dynamic_cats": ids("category", batch_size, DYNAMIC_CATS),
        "product_seq": product_seq,
        "product_len": product_len,
        "channel_seq": channel_seq,
        "channel_len": channel_len,
        "watch": watch,
        "stay_time": watch * torch.rand(batch_size, generator=g) * 5.0,
        "goods_bag": watch * (torch.rand(batch_size, generator=g) < 0.3).float(),
        "product_click": watch * (torch.rand(batch_size, generator=g) < 0.2).float(),
    }
