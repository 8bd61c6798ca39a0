from __future__ import annotations

from cds_service.review.chart import bar_chart
from cds_service.review.views import _cell, _markdown


def test_card_markdown_escapes_raw_html_and_refuses_script_links():
    html = _markdown().render("**bold** <script>alert(1)</script> [x](javascript:alert(1))")
    assert "<strong>bold</strong>" in html
    assert "<script>" not in html and 'href="javascript:' not in html


def test_bar_chart_is_an_accessible_svg_with_escaped_labels():
    svg = str(bar_chart("Rates <by> family", [("A & <B>", 0.5), ("C", 0.0)], lambda v: f"{v:.0%}", 1.0))
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "Rates &lt;by&gt; family" in svg and "A &amp; &lt;B&gt;" in svg and "50%" in svg
    assert "No data" in str(bar_chart("Empty", []))


def test_csv_cells_cannot_start_a_spreadsheet_formula():
    assert _cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _cell("+1") == "'+1" and _cell("plain") == "plain" and _cell(None) == ""
