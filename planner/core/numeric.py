"""Turning computed ratios into whole numbers without floating-point surprises.

``math.floor(1.1 * 1000 / (1.1 * 100))`` is 9: the quotient is 9.999999999999998. Every
place where a computed number becomes a count of racks, lots or replicas goes through
``safe_floor`` or ``safe_ceil``, which first snap a value within a relative tolerance of an
integer onto that integer.
"""

from __future__ import annotations

import math

RELATIVE_TOLERANCE = 1e-9
"""Values within 1e-9 · max(1, |x|) of an integer are taken to be that integer. Far above the
noise of a few floating-point operations (≈1e-15), far below any meaningful fraction of a rack."""


def _snapped(x: float, tolerance: float) -> float:
    nearest = round(x)
    return float(nearest) if abs(x - nearest) <= tolerance * max(1.0, abs(x)) else x


def safe_floor(x: float, tolerance: float = RELATIVE_TOLERANCE) -> int:
    """⌊x⌋, with x first snapped to an integer within ``tolerance`` (relative)."""
    return math.floor(_snapped(x, tolerance))


def safe_ceil(x: float, tolerance: float = RELATIVE_TOLERANCE) -> int:
    """⌈x⌉, with x first snapped to an integer within ``tolerance`` (relative)."""
    return math.ceil(_snapped(x, tolerance))
