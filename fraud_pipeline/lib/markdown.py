"""Markdown for the Dagster UI: tables of records, numbers rounded for reading."""

from __future__ import annotations


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A list of records as a Markdown table for the UI (numbers rounded for reading)."""
    if not rows:
        return "none"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.0f}"
    return "" if value is None else str(value)
