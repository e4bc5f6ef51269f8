"""The shopper behaviour model shared by the simulator and the judged-data replay.

A shopper examines position *k* with probability ``1 / k ** position_bias_exponent``; an examined
product is clicked, carted and bought with probabilities set by its true grade (0, 1, 2).
"""

from __future__ import annotations

import math

import numpy as np

POSITION_BIAS_EXPONENT = 0.8
CLICK_GIVEN_SEEN = (0.03, 0.22, 0.55)
CART_GIVEN_CLICK = (0.04, 0.2, 0.45)
PURCHASE_GIVEN_CART = (0.1, 0.4, 0.7)


def deterministic_power(base: np.ndarray, exponent: float) -> np.ndarray:
    """``base ** exponent`` with the same bits on every x86 machine: numpy's vectorised power
    differs in the last bit between AVX-512 machines and the rest, and the simulator's choices
    (intent popularity, examination) must not. Computed once per distinct base.

    >>> deterministic_power(np.array([1, 4, 4]), 0.5).tolist()
    [1.0, 2.0, 2.0]
    """
    values, inverse = np.unique(np.asarray(base, dtype=np.float64), return_inverse=True)
    powers = np.array([math.pow(v, exponent) for v in values.tolist()], dtype=np.float64)
    return powers[inverse].reshape(np.shape(base))


def simulate_engagement(
    grades: np.ndarray,
    positions: np.ndarray,
    rng: np.random.Generator,
    position_bias_exponent: float = POSITION_BIAS_EXPONENT,
    click_given_seen: tuple[float, float, float] = CLICK_GIVEN_SEEN,
    cart_given_click: tuple[float, float, float] = CART_GIVEN_CLICK,
    purchase_given_cart: tuple[float, float, float] = PURCHASE_GIVEN_CART,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clicked, carted and purchased flags for impressions of ``grades`` at 1-based ``positions``
    (any shape, broadcast together). Purchases imply carts imply clicks."""
    seen = 1.0 / deterministic_power(positions, position_bias_exponent)
    shape = np.broadcast_shapes(np.shape(grades), np.shape(seen))
    clicked = rng.random(shape) < seen * np.asarray(click_given_seen)[grades]
    carted = clicked & (rng.random(shape) < np.asarray(cart_given_click)[grades])
    purchased = carted & (rng.random(shape) < np.asarray(purchase_given_cart)[grades])
    return clicked, carted, purchased
