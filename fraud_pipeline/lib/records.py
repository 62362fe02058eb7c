"""Plain Python values for asset outputs, so they serialise to JSON as they are."""

from __future__ import annotations


def plain(value):
    """A numpy scalar as the Python value it holds; anything else unchanged."""
    return value.item() if hasattr(value, "item") else value


def plain_rows(rows: list[dict]) -> list[dict]:
    """Every value of every record through :func:`plain`."""
    return [{k: plain(v) for k, v in row.items()} for row in rows]
