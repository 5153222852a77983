"""Values quoted in error messages: short enough to read in one line, whatever the user typed."""

from __future__ import annotations

from typing import Any

QUOTE_CHARS = 80


def quoted(value: Any) -> str:
    """`value`'s repr, cut to about QUOTE_CHARS characters (a text says how long it was)."""
    text = repr(value)
    if len(text) <= QUOTE_CHARS:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[:QUOTE_CHARS]}...{size}"


def is_index(token: str) -> bool:
    """A 0-based index written in ASCII digits (str.isdigit also takes '²' and other scripts' digits)."""
    return token.isascii() and token.isdigit()
