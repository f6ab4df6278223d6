"""Request and response bodies of the ranking service (pydantic; bad input is a 422 that names the field)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator


def _id(value: object) -> object:
    """Integer ids are accepted and read as strings (the raw-log contract allows both)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


#: Bounds of event values (far above anything real; they keep one bad producer from poisoning the state).
MAX_STAY_MS = 7 * 86_400_000
MAX_COUNT = 10**9
MAX_AMOUNT = 1e12
MAX_ON_SALE = 1000

Id = Annotated[str, BeforeValidator(_id), StringConstraints(min_length=1, max_length=128)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RankContext(Strict):
    """Request context: scene and the request time (epoch ms; default: now)."""

    scene: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "homepage"
    ts: int | None = Field(default=None, ge=0, le=10**14)


class RankRequest(Strict):
    """Rank ``candidates`` for ``user_id``; ``limit`` returns (and logs as impressions) only the top ones."""

    user_id: Id
    request_id: Id
    candidates: list[Id] = Field(min_length=1)
    context: RankContext = RankContext()
    limit: int | None = Field(default=None, ge=1)

    @field_validator("candidates")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            seen: set[str] = set()
            dup = next(c for c in v if c in seen or seen.add(c))  # type: ignore[func-returns-value]
            raise ValueError(f"candidate channel ids must be unique ('{dup}' repeats)")
        return v


class RankedChannel(BaseModel):
    channel_id: str
    position: int
    watch: float  # P(watch), the ranking score
    stay_time: float  # predicted log1p(stay seconds)
    goods_bag: float
    product_click: float


class RankResponse(BaseModel):
    request_id: str
    user_id: str
    variant: str
    model_version: str
    model_name: str
    items: list[RankedChannel]
    latency_ms: float


class _Event(Strict):
    event_id: Id
    ts: int = Field(ge=0, le=10**14)


class _Visit(_Event):
    user_id: Id
    request_id: Id
    channel_id: Id
    derived: bool | None = None


class ProductClick(_Event):
    event: Literal["product_click"]
    user_id: Id
    product_id: Id


class Enter(_Visit):
    event: Literal["enter"]


class Leave(_Visit):
    event: Literal["leave"]
    stay_ms: int = Field(ge=0, le=MAX_STAY_MS)


class GoodsBagClick(_Event):
    event: Literal["goods_bag_click"]
    user_id: Id
    request_id: Id
    channel_id: Id


class ChannelProductClick(_Event):
    event: Literal["channel_product_click"]
    user_id: Id
    request_id: Id
    channel_id: Id
    product_id: Id


class ChannelStats(_Event):
    event: Literal["channel_stats"]
    channel_id: Id
    viewers: int = Field(ge=0, le=MAX_COUNT)
    revenue_window: float = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, allow_inf_nan=False)  # NaN / infinity: 422
    products_on_sale: list[Id] = Field(max_length=MAX_ON_SALE)


Event = Annotated[ProductClick | Enter | Leave | GoodsBagClick | ChannelProductClick | ChannelStats,
                  Field(discriminator="event")]


class EventsRequest(Strict):
    """Feedback events in the raw-log contract (impressions are logged by the service itself)."""

    events: list[Event] = Field(min_length=1, max_length=100_000)
