"""Static entities of the simulated world: categories, products, channels, users.

Everything here is drawn once from the world seed, independently of how the
simulation is later chunked, so ``World.from_settings`` rebuilds the same world.
Random streams are keyed by ``(seed, tag, block)`` so that each part is stable
when another part changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eliverec.config import WorldConfig

#: Users are drawn in fixed blocks (one random stream each), independent of ``chunk_users``.
USER_BLOCK = 65536
#: Favourite-anchor slots per user (anchor loyalty).
FAVOURITES = 3
#: Maximum products mounted on a channel (its goods bag).
MAX_MOUNTED = 24
#: Secondary categories of the mounted products per channel.
SECONDARY = 2
#: Price buckets of products.
PRICE_BUCKETS = 10

GENDERS = np.array(["F", "M", "U"])
AGE_BUCKETS = np.array(["<18", "18-24", "25-29", "30-34", "35-39", "40-49", "50+"])
CITY_TIERS = np.array(["1", "2", "3", "4", "5"])

# Stream tags (part of every SeedSequence key).
TAG_CATALOG, TAG_CHANNELS, TAG_USERS, TAG_INTENTS, TAG_DRIFT, TAG_SCHEDULE, TAG_DAY, TAG_CALIB = range(1, 9)


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """A random generator keyed by the world seed and integer tags (stable streams)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))


def zipf_weights(n: int, s: float) -> np.ndarray:
    """Normalised Zipf weights ``1 / rank^s`` for ranks 1..n."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return w / w.sum()


@dataclass(frozen=True)
class Catalog:
    """Categories, brands and products (product domain)."""

    category_weight: np.ndarray  # (C,) popularity of categories, sums to 1
    product_category: np.ndarray  # (P,) int32
    product_brand: np.ndarray  # (P,) int32
    product_price_bucket: np.ndarray  # (P,) int64, 0..PRICE_BUCKETS-1
    product_price: np.ndarray  # (P,) float64, yuan
    cat_order: np.ndarray  # (P,) product indices ordered by category, then popularity rank
    cat_start: np.ndarray  # (C+1,) offsets of each category in cat_order

    @property
    def n_categories(self) -> int:
        return int(self.category_weight.size)

    def sample_products(self, categories: np.ndarray, rng: np.random.Generator, skew: float = 3.0) -> np.ndarray:
        """One product per requested category; rank ~ size * u^skew (a popular head, a long tail)."""
        start = self.cat_start[categories]
        size = self.cat_start[categories + 1] - start
        rank = np.minimum((size * rng.random(categories.size) ** skew).astype(np.int64), size - 1)
        return self.cat_order[start + rank]


def build_catalog(cfg: WorldConfig, seed: int) -> Catalog:
    """Categories with Zipf-ish sizes, brands nested in categories, products with price buckets."""
    rng = rng_for(seed, TAG_CATALOG)
    n_cat, n_prod, n_brand = cfg.n_categories, cfg.n_products, cfg.n_brands
    cat_w = rng.permutation(zipf_weights(n_cat, 0.6))
    # every category holds at least one product
    prod_cat = np.concatenate([np.arange(n_cat), rng.choice(n_cat, size=n_prod - n_cat, p=cat_w)]).astype(np.int32)
    prod_cat = prod_cat[rng.permutation(n_prod)]
    brand_cat = np.concatenate([np.arange(n_cat), rng.integers(0, n_cat, size=max(n_brand - n_cat, 0))])[:n_brand]
    brand_order = np.argsort(brand_cat, kind="stable")
    brand_start = np.searchsorted(brand_cat[brand_order], np.arange(n_cat + 1))
    b_size = np.maximum(brand_start[prod_cat + 1] - brand_start[prod_cat], 1)
    b_rank = np.minimum((b_size * rng.random(n_prod) ** 2).astype(np.int64), b_size - 1)
    prod_brand = brand_order[np.minimum(brand_start[prod_cat] + b_rank, n_brand - 1)].astype(np.int32)
    cat_price = rng.uniform(1.0, PRICE_BUCKETS - 2.0, size=n_cat)
    bucket = np.clip(np.rint(cat_price[prod_cat] + rng.normal(0.0, 1.2, n_prod)), 0, PRICE_BUCKETS - 1).astype(np.int64)
    price = np.round(np.exp(2.0 + 0.55 * bucket + rng.normal(0.0, 0.15, n_prod)), 2)
    # popularity rank inside a category: a random order (ids reveal nothing)
    cat_order = np.lexsort((rng.random(n_prod), prod_cat))
    cat_start = np.searchsorted(prod_cat[cat_order], np.arange(n_cat + 1))
    return Catalog(cat_w, prod_cat, prod_brand, bucket, price, cat_order, cat_start)


@dataclass(frozen=True)
class Channels:
    """Live channels: anchor, categories, mounted products, popularity and a base schedule."""

    anchor: np.ndarray  # (N,) int32
    top_category: np.ndarray  # (N,) int32
    secondary: np.ndarray  # (N, SECONDARY) int32, distinct from top
    log_pop: np.ndarray  # (N,) log(pop / max pop) <= 0 (Zipf)
    audience: np.ndarray  # (N,) off-platform audience scale for channel_stats
    mounted: np.ndarray  # (N, MAX_MOUNTED) product indices, -1 padded
    n_mounted: np.ndarray  # (N,) int64
    base_start_min: np.ndarray  # (N,) usual broadcast start, minutes of the day
    base_duration_min: np.ndarray  # (N,) usual broadcast length in minutes
    by_category: np.ndarray  # (N,) channel indices ordered by top category, most popular first
    by_category_start: np.ndarray  # (C+1,)

    @property
    def n(self) -> int:
        return int(self.anchor.size)


def diurnal_density(n_slots: int) -> np.ndarray:
    """Activity over the day (UTC slots): a base plus a noon and a strong evening peak; sums to 1."""
    hours = (np.arange(n_slots) + 0.5) * 24.0 / n_slots
    d = 0.25 + 0.8 * np.exp(-0.5 * ((hours - 12.5) / 1.8) ** 2) + 1.6 * np.exp(-0.5 * ((hours - 20.5) / 2.2) ** 2)
    return d / d.sum()


def build_channels(cfg: WorldConfig, catalog: Catalog, seed: int) -> Channels:
    """Channels with Zipf popularity, categories, mounted products and a usual broadcast window."""
    rng = rng_for(seed, TAG_CHANNELS)
    n, n_cat = cfg.n_channels, cfg.n_categories
    anchor = np.concatenate([rng.permutation(cfg.n_anchors), rng.integers(0, cfg.n_anchors, max(n - cfg.n_anchors, 0))])
    anchor = anchor[:n][rng.permutation(n)].astype(np.int32)
    top = rng.choice(n_cat, size=n, p=catalog.category_weight).astype(np.int32)
    # secondary categories: distinct from the top one and from each other
    offs = np.stack([rng.integers(1, n_cat, n) for _ in range(SECONDARY)], axis=1)
    offs[:, 1] = np.where(offs[:, 1] == offs[:, 0], offs[:, 0] % (n_cat - 1) + 1, offs[:, 1])
    secondary = ((top[:, None] + offs) % n_cat).astype(np.int32)
    pop = zipf_weights(n, cfg.zipf_exponent)[rng.permutation(n)]
    log_pop = np.log(pop / pop.max())
    audience = np.round(20.0 + 20000.0 * pop / pop.max() * rng.lognormal(0.0, 0.3, n))
    n_mounted = rng.integers(8, MAX_MOUNTED + 1, n)
    slot_cat = np.where(rng.random((n, MAX_MOUNTED)) < 0.6, top[:, None], secondary[np.arange(n)[:, None],
                                                                                     rng.integers(0, SECONDARY,
                                                                                                  (n, MAX_MOUNTED))])
    mounted = catalog.sample_products(slot_cat.ravel(), rng, skew=2.0).reshape(n, MAX_MOUNTED).astype(np.int64)
    mounted[np.arange(MAX_MOUNTED)[None, :] >= n_mounted[:, None]] = -1
    duration = np.clip(rng.gamma(4.0, cfg.live_hours * 60.0 / 4.0, n), 60.0, 20 * 60.0)
    # starts follow user activity, shifted so that the middle of a broadcast meets the demand
    dens = diurnal_density(288)
    mid = (rng.choice(288, size=n, p=dens) + rng.random(n)) * 5.0
    start = np.clip(mid - duration / 2.0, 0.0, 1440.0 - duration)
    by_cat = np.lexsort((-log_pop, top))
    by_cat_start = np.searchsorted(top[by_cat], np.arange(n_cat + 1))
    return Channels(anchor, top, secondary, log_pop, audience, mounted, n_mounted, start, duration, by_cat,
                    by_cat_start)


@dataclass(frozen=True)
class Users:
    """Users: profile, activity per domain, live bias, anchor loyalty and base intents."""

    gender: np.ndarray  # (U,) int8 index into GENDERS
    age_bucket: np.ndarray  # (U,) int8
    city_tier: np.ndarray  # (U,) int8
    register_days: np.ndarray  # (U,) int64 days since registration on the first simulated day
    low_activity: np.ndarray  # (U,) bool
    feed_rate: np.ndarray  # (U,) float64 mean feed requests per day
    click_rate: np.ndarray  # (U,) float64 mean product clicks per day
    live_bias: np.ndarray  # (U,) float64 additive watch logit
    loyalty: np.ndarray  # (U,) float64 in [0, 1]
    favourites: np.ndarray  # (U, FAVOURITES) anchor indices, -1 padded
    intents: np.ndarray  # (U, Kc+Kp+Kl) int16 base intents: consistent | product-specific | live-specific

    @property
    def n(self) -> int:
        return int(self.gender.size)


def draw_intents(n: int, weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct categories per row, drawn without replacement with probability ~ ``weights``.

    Uses the exponential-keys trick: the top-k of ``u^(1/w)`` is a weighted sample without replacement.
    """
    keys = np.log(rng.random((n, weights.size))) / weights[None, :]
    top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1).astype(np.int16)


def build_users(cfg: WorldConfig, catalog: Catalog, channels: Channels, seed: int, n_users: int) -> Users:
    """Users in fixed blocks of ``USER_BLOCK`` (one stream each), so a user does not depend on chunking."""
    k = cfg.n_consistent + cfg.n_product_specific + cfg.n_live_specific
    if k > cfg.n_categories:
        from eliverec.config import ConfigError

        raise ConfigError(f"world: {k} intents per user need at least {k} categories (n_categories={cfg.n_categories})")
    parts = [_user_block(cfg, catalog, channels, seed, b, min(USER_BLOCK, n_users - b * USER_BLOCK), k)
             for b in range((n_users + USER_BLOCK - 1) // USER_BLOCK)]
    return Users(*[np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))])


def _user_block(cfg: WorldConfig, catalog: Catalog, channels: Channels, seed: int, block: int, n: int,
                k: int) -> tuple[np.ndarray, ...]:
    rng = rng_for(seed, TAG_USERS, block)
    gender = rng.choice(3, n, p=[0.55, 0.4, 0.05]).astype(np.int8)
    age = rng.choice(len(AGE_BUCKETS), n, p=[0.04, 0.2, 0.24, 0.2, 0.14, 0.12, 0.06]).astype(np.int8)
    city = rng.choice(len(CITY_TIERS), n, p=[0.15, 0.25, 0.25, 0.2, 0.15]).astype(np.int8)
    register = rng.integers(1, 3650, n).astype(np.int64)
    low = rng.random(n) < cfg.low_activity_share
    common = rng.normal(0.0, cfg.activity_sigma, n)  # shared activity level (long tail)
    scale = np.where(low, cfg.low_activity_factor, 1.0)
    feed_rate = cfg.feeds_per_day * scale * np.exp(common + rng.normal(0.0, 0.3 * cfg.activity_sigma, n))
    click_rate = cfg.product_clicks_per_day * scale * np.exp(common + rng.normal(0.0, 0.4 * cfg.activity_sigma, n))
    live_bias = rng.normal(0.0, 0.4, n)
    loyalty = rng.beta(2.0, 2.0, n)
    intents = draw_intents(n, catalog.category_weight, k, rng)
    fav = _favourites(cfg, channels, intents, rng)
    return gender, age, city, register, low, feed_rate, click_rate, live_bias, loyalty, fav, intents


def _favourites(cfg: WorldConfig, channels: Channels, intents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Favourite anchors: popular channels in the user's live-domain intents (consistent + live-specific)."""
    n = intents.shape[0]
    live_cols = np.r_[0 : cfg.n_consistent, cfg.n_consistent + cfg.n_product_specific : intents.shape[1]]
    cat = intents[np.arange(n)[:, None], live_cols[rng.integers(0, live_cols.size, (n, FAVOURITES))]].astype(np.int64)
    start, end = channels.by_category_start[cat], channels.by_category_start[cat + 1]
    size = end - start
    rank = np.minimum((size * rng.random((n, FAVOURITES)) ** 2).astype(np.int64), np.maximum(size - 1, 0))
    chan = channels.by_category[np.minimum(start + rank, channels.n - 1)]
    fav = channels.anchor[chan].astype(np.int32)
    keep = (size > 0) & (np.arange(FAVOURITES)[None, :] < rng.integers(0, FAVOURITES + 1, n)[:, None])
    return np.where(keep, fav, -1).astype(np.int32)
