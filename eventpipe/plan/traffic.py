"""A day of traffic for the simulation: a smooth daily curve with a given peak and mean, plus seeded noise."""

from __future__ import annotations

import math
import random

from eventpipe.plan.assumptions import TICK_S


def daily_curve(
    peak: float, mean_ratio: float, peak_hour: float = 20.0, seed: int = 7, step_s: int = TICK_S
) -> list[float]:
    """A day of load (one value per step) peaking at ``peak`` with the given mean/peak ratio.

    Shape: ``a + (1-a) * ((1 + cos)/2) ** p``, the smallest power p whose floor a is >= 10 %
    of the peak, plus 3 % smoothed noise (seeded), clipped at the peak.
    """
    if not 0 < mean_ratio <= 1:
        raise ValueError(f"events/day implies a mean/peak ratio of {mean_ratio:.2f}; it must be in (0, 1]")
    floor, power = 0.02, 8
    for p in range(1, 9):
        mean_g = math.comb(2 * p, p) / 4**p
        a = (mean_ratio - mean_g) / (1 - mean_g) if mean_g < 1 else 1.0
        if a >= 0.1 or (p == 8 and a > 0):
            floor, power = min(a, 1.0), p
            break
    rng = random.Random(seed)
    noise, out = 0.0, []
    for i in range(86400 // step_s):
        hour = i * step_s / 3600
        g = ((1 + math.cos(2 * math.pi * (hour - peak_hour) / 24)) / 2) ** power
        noise = 0.9 * noise + 0.1 * rng.gauss(0, 0.3)  # ~3 % std, minutes-long correlation
        out.append(min(peak, peak * (floor + (1 - floor) * g) * (1 + noise)))
    return out
