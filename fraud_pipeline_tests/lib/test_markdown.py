"""Text from data reaches Markdown and HTML inert: no image, link, raw HTML or code span, no broken table."""

import html
import re

import pytest

from fraud_pipeline.lib.markdown import WORD_JOINER, html_text, markdown_table, md_text

HOSTILE = [
    "![x](http://127.0.0.1:9/beacon)",
    '<img src="http://127.0.0.1:9/beacon" onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "<script>alert(1)</script>",
    "<a href='http://127.0.0.1:9/'>x</a>",
    "<http://127.0.0.1:9/beacon>",
    "`code` | a | b |",
    "\\![x](http://127.0.0.1:9/beacon)",
    "line\nbreak | ![y](http://127.0.0.1:9/b)",
    "[ref]: http://127.0.0.1:9/beacon",
    "<!-- comment -->",
    "see http://127.0.0.1:9/beacon or www.example.com or a@example.com",
]


#: The only elements a table of records (or a line of text) may render to.
PLAIN = {"p", "table", "thead", "tbody", "tr", "th", "td"}


def elements(rendered: str) -> set[str]:
    return {m.lower() for m in re.findall(r"</?([A-Za-z][A-Za-z0-9]*)", rendered)}


def render(markdown: str) -> str:
    """CommonMark with GFM tables and bare-link detection, as the Dagster UI renders Markdown metadata."""
    markdown_it = pytest.importorskip("markdown_it")
    renderer = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")
    try:
        import linkify_it  # noqa: F401

        renderer = renderer.enable("linkify")
        renderer.options["linkify"] = True
    except ImportError:  # the browser test sees the UI's own bare-link detection
        pass
    return renderer.render(markdown)


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_renders_as_its_own_text_and_nothing_else(value):
    rendered = render(md_text(value))
    assert elements(rendered) <= PLAIN and "<!--" not in rendered, rendered
    text = re.sub(r"</?(p|table|thead|tbody|tr|th|td)>", "", rendered).strip()
    assert html.unescape(text).replace(WORD_JOINER, "") == value.replace("\n", " ")


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_cell_keeps_its_table_whole(value):
    table = markdown_table([{"cohort": "channel", "value": value, "n": 3}, {"cohort": "mcc", "value": "5411", "n": 4}])
    rendered = render(table)
    assert elements(rendered) <= PLAIN, rendered
    rows = re.findall(r"<tr>(.*?)</tr>", rendered, flags=re.S)
    assert len(rows) == 3
    assert all(len(re.findall(r"<t[hd]\b", row)) == 3 for row in rows), rendered


def test_ordinary_values_read_as_they_are():
    assert md_text("<7d") == "<7d" and md_text("a <= b") == "a <= b"
    assert md_text("n_prior_tx_30d") == "n_prior_tx_30d"
    assert md_text("2025-03-01/transactions.csv row 4") == "2025-03-01/transactions.csv row 4"
    assert "| 1,234 |" in markdown_table([{"x": 1234.0}])


def test_html_text_escapes_markup_and_quotes():
    assert html_text('<img src=x onerror="a">') == "&lt;img src=x onerror=&quot;a&quot;&gt;"
    assert html_text(None) == ""


def test_quarantine_reasons_with_markup_reach_the_landing_metadata_inert(tmp_path, make_resources):
    """A cell and a file name from a day folder, through landing into the UI's quarantine table."""
    import dagster as dg

    from fraud_pipeline.ingestion.assets import landed_files
    from fraud_pipeline.resources import DataSource

    day = tmp_path / "incoming" / "2025-03-01"
    day.mkdir(parents=True)
    hostile = "![x](http://127.0.0.1:9/beacon)"
    (day / "transactions_<img src=x>.csv").write_text(
        "transaction_id,user_id,merchant_id,event_time,amount\n"
        f"1,10,100,2025-03-01T08:00:00Z,{hostile}\n2,10,100,2025-03-01T09:00:00Z,5.00\n"
    )
    resources = make_resources(tmp_path / "warehouse", source=DataSource(folder=str(tmp_path / "incoming")))
    result = dg.materialize([landed_files], partition_key="2025-03-01", resources=resources)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    for key in ("quarantine_sample", "files"):
        rendered = render(metadata[key].value)
        assert elements(rendered) <= PLAIN, rendered
    assert "beacon" in metadata["quarantine_sample"].value
