""" "Did you mean …?" hints for ids typed by hand (rack, LLM, class and period names)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice most like ``word`` (case-insensitive), or None when none is close."""
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[match[0]] if match else None


def did_you_mean(word: str, choices: Iterable[str], noun: str = "id") -> str:
    """``unknown <noun>; did you mean 'x'?`` or ``unknown <noun>; known: a, b, c``."""
    options = sorted(set(choices))
    match = closest(word, options)
    if match is not None:
        return f"unknown {noun}; did you mean '{match}'?"
    shown = ", ".join(options[:12]) + (" …" if len(options) > 12 else "")
    return f"unknown {noun}; known: {shown}"
