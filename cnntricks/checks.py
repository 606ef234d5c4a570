"""Range checks for constructor parameters.

Each raises a ValueError whose message names the parameter, its value and what is accepted; the
config builder prefixes the option's path, so the user reads one line such as
`cnntricks: error: aug.hsv: power=[4.0, 0.25]: low must be <= high`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, TypeVar

T = TypeVar("T")


def check_range(name: str, value: T, low: float = -math.inf, high: float = math.inf) -> T:
    """`value` if it lies in [low, high]."""
    if not low <= value <= high:
        if high == math.inf:
            raise ValueError(f"{name}={value}: must be >= {low}")
        raise ValueError(f"{name}={value}: must lie in [{low}, {high}]")
    return value


def check_interval(name: str, value: Any, low: float = -math.inf, high: float = math.inf,
                   positive: bool = False) -> tuple[float, float]:
    """A [low, high] parameter as a float pair: two numbers, ordered, inside the accepted bounds."""
    if len(value) != 2:
        raise ValueError(f"{name}={list(value)}: expected two numbers [low, high]")
    pair = (float(value[0]), float(value[1]))
    if pair[0] > pair[1]:
        raise ValueError(f"{name}={list(pair)}: low must be <= high")
    if positive and pair[0] <= 0:
        raise ValueError(f"{name}={list(pair)}: must be > 0")
    if pair[0] < low or pair[1] > high:
        raise ValueError(f"{name}={list(pair)}: must lie within [{low}, {high}]")
    return pair


def check_choice(name: str, value: T, choices: Iterable[Any]) -> T:
    """`value` if it is one of `choices`."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name}={value}: accepted values: {', '.join(map(str, choices))}")
    return value
