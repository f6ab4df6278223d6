"""The world's ground truth: how users react to a live channel shown at a position.

For an impression of channel ``c`` to user ``u`` at time ``t`` and feed position ``k``
(0-based), with intent matches ``m_cons, m_live, m_prod`` in [0, 1] (1 when the channel's
top category is in the set, ``secondary_weight`` when only a secondary category is)::

    logit   = b0 + b_cons*m_cons + b_live*m_live + 0*m_prod          (intents; product-specific
              + b_loyal*loyalty_u*[anchor_c in fav_u]                  ones do not count here)
              + b_pop*log_pop_c + b_heat*heat_c(t) + bias_u
    enter   = exam(k) * sigmoid(logit) * [broadcast still on]         exam(k) = (1 + k)^-eta
    stay    = bounce ? U(lo, hi) : LogNormal(mu_uc, sigma), cut at the broadcast end
    watch   = enter * P(stay >= min_stay_ms)
    goods_bag     = enter * (1 - bounce) * sigmoid(g0 + g1*purchase)   purchase = m(consistent +
    product_click = goods_bag * sigmoid(h0 + h1*purchase)               product-specific intents)

``b0`` is solved when the world is built so that the logging policy gets
``world.watches_per_feed`` watches per feed (see :func:`solve_intercept`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import expit, ndtr

#: Gauss-Hermite nodes for the expected stay-time label E[log1p(stay_s)].
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(16)
_GH_W = _GH_W / _GH_W.sum()


@dataclass(frozen=True)
class Truth:
    """Coefficients of the behaviour model (module docstring)."""

    intercept: float = -2.0
    b_consistent: float = 1.6
    b_live: float = 1.6
    b_product: float = 0.0  # product-specific intents do not move live watching
    b_loyalty: float = 2.6
    b_pop: float = 0.3
    b_heat: float = 0.6
    secondary_weight: float = 0.4
    exam_eta: float = 0.35
    bounce: float = 0.12
    bounce_lo_ms: float = 300.0
    bounce_hi_ms: float = 2700.0
    stay_mu0: float = math.log(40_000.0)
    stay_mu_match: float = 0.5
    stay_mu_loyalty: float = 0.4
    stay_mu_purchase: float = 0.3
    stay_sigma: float = 1.0
    g0: float = -1.6
    g1: float = 1.8
    h0: float = -1.2
    h1: float = 1.5

    def with_intercept(self, b0: float) -> Truth:
        """A copy with a new intercept."""
        return replace(self, intercept=float(b0))


@dataclass(frozen=True)
class PairTerms:
    """Per-impression inputs of the behaviour model (all arrays of one shape)."""

    m_consistent: np.ndarray
    m_live: np.ndarray
    m_product: np.ndarray
    purchase: np.ndarray
    loyal: np.ndarray  # loyalty_u * [anchor in favourites]
    log_pop: np.ndarray
    heat: np.ndarray
    bias: np.ndarray
    time_left_ms: np.ndarray  # last ms of the broadcast - enter time (the leave happens by then)


def exam(position: np.ndarray, eta: float) -> np.ndarray:
    """Position bias: probability that the user examines feed position ``k`` (0-based)."""
    return (1.0 + np.asarray(position, dtype=np.float64)) ** (-eta)


def enter_logit(t: Truth, x: PairTerms) -> np.ndarray:
    """The watch logit of the module docstring (without position bias)."""
    return (t.intercept + t.b_consistent * x.m_consistent + t.b_live * x.m_live + t.b_product * x.m_product
            + t.b_loyalty * x.loyal + t.b_pop * x.log_pop + t.b_heat * x.heat + x.bias)


def stay_mu(t: Truth, x: PairTerms) -> np.ndarray:
    """Log-mean of a non-bounce stay in ms."""
    return (t.stay_mu0 + t.stay_mu_match * (x.m_consistent + x.m_live) + t.stay_mu_loyalty * x.loyal
            + t.stay_mu_purchase * x.purchase)


def probabilities(t: Truth, x: PairTerms, position: np.ndarray, min_stay_ms: float) -> dict[str, np.ndarray]:
    """True probabilities per impression: enter, watch, goods_bag, product_click, stay means."""
    on = x.time_left_ms > 0
    p_enter = np.where(on, exam(position, t.exam_eta) * expit(enter_logit(t, x)), 0.0)
    mu, sig = stay_mu(t, x), t.stay_sigma
    cap = np.maximum(x.time_left_ms, 1.0).astype(np.float64)
    lo, hi = t.bounce_lo_ms, t.bounce_hi_ms
    p_long = ndtr((mu - math.log(max(min_stay_ms, 1e-9))) / sig) if min_stay_ms > 0 else np.ones_like(mu)
    p_short = float(np.clip((hi - min_stay_ms) / (hi - lo), 0.0, 1.0))
    p_stay = np.where(cap >= min_stay_ms, (1 - t.bounce) * p_long + t.bounce * p_short, 0.0)
    p_bag = p_enter * (1 - t.bounce) * expit(t.g0 + t.g1 * x.purchase)
    return {
        "enter": p_enter,
        "watch": p_enter * p_stay,
        "goods_bag": p_bag,
        "product_click": p_bag * expit(t.h0 + t.h1 * x.purchase),
        "stay_ms_mean": (1 - t.bounce) * _mean_min_lognormal(mu, sig, cap) + t.bounce * _mean_min_uniform(lo, hi, cap),
        "stay_label_mean": p_enter * _mean_log1p_stay(t, mu, cap),
    }


def _mean_min_lognormal(mu: np.ndarray, sig: float, cap: np.ndarray) -> np.ndarray:
    """E[min(X, T)] for X ~ LogNormal(mu, sig)."""
    z = (np.log(cap) - mu) / sig
    return np.exp(mu + sig**2 / 2) * ndtr(z - sig) + cap * (1.0 - ndtr(z))


def _mean_min_uniform(lo: float, hi: float, cap: np.ndarray) -> np.ndarray:
    """E[min(U, T)] for U ~ Uniform(lo, hi)."""
    c = np.clip(cap, lo, hi)
    inner = ((c**2 - lo**2) / 2.0 + cap * (hi - c)) / (hi - lo)
    return np.where(cap <= lo, cap, inner)


def _mean_log1p_stay(t: Truth, mu: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """E[log1p(stay seconds) | enter] (the ``stay_time`` label), by Gauss-Hermite quadrature."""
    x = np.minimum(np.exp(mu[..., None] + t.stay_sigma * _GH_X), cap[..., None])
    long = (np.log1p(x / 1000.0) * _GH_W).sum(-1)
    grid = np.linspace(t.bounce_lo_ms, t.bounce_hi_ms, 9)
    short = np.log1p(np.minimum(grid, cap[..., None]) / 1000.0).mean(-1)
    return (1 - t.bounce) * long + t.bounce * short


def sample(t: Truth, x: PairTerms, position: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw behaviour for impressions: entered, stay_ms (0 if not), goods_bag, product_click."""
    n = x.heat.size
    p_enter = np.where(x.time_left_ms > 0, exam(position, t.exam_eta) * expit(enter_logit(t, x)), 0.0)
    u = rng.random((4, n))
    entered = u[0] < p_enter
    bounce = u[1] < t.bounce
    long = np.exp(stay_mu(t, x) + t.stay_sigma * rng.standard_normal(n))
    short = t.bounce_lo_ms + (t.bounce_hi_ms - t.bounce_lo_ms) * rng.random(n)
    stay = np.minimum(np.where(bounce, short, long), np.maximum(x.time_left_ms, 0))
    stay = np.where(entered, np.maximum(stay, 1.0), 0.0).astype(np.int64)
    bag = entered & ~bounce & (u[2] < expit(t.g0 + t.g1 * x.purchase))
    click = bag & (u[3] < expit(t.h0 + t.h1 * x.purchase))
    return {"entered": entered, "stay_ms": stay, "goods_bag": bag, "product_click": click}


def solve_intercept(t: Truth, parts: list[tuple[PairTerms, np.ndarray]], n_feeds: int, target: float,
                    min_stay_ms: float) -> Truth:
    """Bisection on ``b0`` so that the expected watches per feed over pilot feeds equals ``target``.

    ``parts`` are (terms, positions) of the pilot impressions; P(stay >= min | enter) does not depend on b0.
    """
    w_all, z_all = [], []
    for x, position in parts:
        p_enter = probabilities(t, x, position, 0.0)["enter"]
        p_stay = probabilities(t, x, position, min_stay_ms)["watch"] / np.maximum(p_enter, 1e-300)
        z_all.append(enter_logit(t, x) - t.intercept)
        w_all.append(np.where(x.time_left_ms > 0, exam(position, t.exam_eta), 0.0) * p_stay)
    w, z = np.concatenate(w_all), np.concatenate(z_all)
    lo, hi = -15.0, 8.0
    for _ in range(60):
        mid = (lo + hi) / 2
        got = (w * expit(z + mid)).sum() / max(n_feeds, 1)
        lo, hi = (mid, hi) if got < target else (lo, mid)
    return t.with_intercept((lo + hi) / 2)
