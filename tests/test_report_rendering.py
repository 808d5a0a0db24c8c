"""Rendering: report blocks escape what they show, a rendered report opens in headless chromium
with the network disabled (no failed requests, every chart drawn; screenshot saved), and the PDF's
pages, rendered to PNG, show the charts."""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from analytics_lib.config import PROJECT_ROOT, get_settings
from analytics_lib.reporting import blocks, charts
from analytics_lib.reporting import format as fmt
from analytics_lib.reporting.theme import PALETTE

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
NOW = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)


# -- blocks -------------------------------------------------------------------------------------


def test_tables_escape_text_and_format_numbers_from_column_names():
    frame = pd.DataFrame({"provider": ["<script>alert(1)</script>", "stripe"], "gross_revenue": [1234.5, None],
                          "success_rate": [0.875, 1.0], "transactions": [12.0, 3.0]})
    markup = blocks.table_html(frame, currency="EUR")
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    assert "€1,234.50" in markup and "87.5%" in markup and ">12<" in markup and "–" in markup


def test_chart_data_cannot_close_its_script_element(monkeypatch):
    shown = []
    monkeypatch.setattr(blocks, "display", lambda bundle, raw=False: shown.append(bundle))
    blocks.chart(go.Figure(go.Bar(x=["</script><img src=x onerror=alert(1)>"], y=[1])))
    markup = shown[0]["text/html"]
    assert markup.count("</script>") == 1 and "<img" not in markup
    assert blocks.PLOTLY_MIME in shown[0], "JupyterLab draws the plotly mime type"


def test_kpi_arrows_are_coloured_only_for_significant_changes():
    good = blocks.KPI("Revenue", 100.0, "money", change=0.1, significance="high").html("USD")
    assert 'pa-change good' in good and "▲ +10.0%" in good
    bad = blocks.KPI("Churn", 0.05, "percent", change=0.01, change_kind="points", good="down",
                     significance="high").html("USD")
    assert "pa-change bad" in bad and "+1.0 pp" in bad
    flat = blocks.KPI("Revenue", 100.0, "money", change=0.1, significance="low").html("USD")
    assert "pa-change flat" in flat


def test_formatting_of_money_percentages_and_missing_values():
    assert fmt.money(1234.5, "USD") == "$1,234.50"
    assert fmt.money(-1234567, "TRY", compact=True) == "-₺1.2M"
    assert fmt.money(12.5, "CHF") == "12.50 CHF"
    assert fmt.percent(0.1234) == "12.3%" and fmt.change(-0.05) == "-5.0%" and fmt.points(0.012) == "+1.2 pp"
    for missing in (None, math.nan, math.inf):
        assert fmt.money(missing) == "–" and fmt.percent(missing) == "–"


def test_waterfall_ends_at_net():
    fig = charts.waterfall([("Gross", 100.0), ("Refunds", -10.0), ("Fees", -5.0)], "bridge", total_label="Net")
    assert list(fig.data[0].measure) == ["absolute", "relative", "relative", "total"]
    assert fig.data[0].text[-1] == "$85.00"


# -- a rendered report in a browser, and its PDF ---------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    from analytics_lib.runner import run_report
    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse

    root = tmp_path_factory.mktemp("render")
    generate(Warehouse(root / "warehouse"), customers=700, months=14, seed=5, end=date(2026, 10, 31))
    settings = replace(get_settings().with_warehouse(root / "warehouse"), outputs=root / "outputs")
    record = run_report("monthly_executive", values={"level": "director_level"}, formats="html,pdf",
                        settings=settings, now=NOW, progress=False)
    assert record.status == "succeeded", record.error
    return record


@pytest.mark.slow
@pytest.mark.browser
def test_report_opens_offline_with_every_chart_drawn(rendered):
    from analytics_lib.reporting.pdf import inspect_page

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "monthly_executive.png"
    check = inspect_page(rendered.path / rendered.artefacts["html"], screenshot=shot)
    assert check.external_requests == [] and check.failed_requests == []
    assert check.console_errors == []
    assert check.charts >= 8 and check.charts_drawn == check.charts
    assert shot.stat().st_size > 50_000


def _page_images(pdf: Path, out: Path) -> list[Path]:
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(out / "page")], check=True)
    return sorted(out.glob("page-*.png"), key=lambda p: int(re.findall(r"\d+", p.stem)[-1]))


def _chart_coloured_share(image: Path) -> tuple[float, float]:
    """(share of non-white pixels, share of pixels in the chart palette's first two colours)."""
    from PIL import Image

    img = Image.open(image).convert("RGB")
    pixels = list(img.getdata())
    targets = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in PALETTE[:2]]
    ink = sum(1 for p in pixels if sum(p) < 720)
    coloured = sum(1 for p in pixels if any(sum(abs(a - b) for a, b in zip(p, t, strict=True)) < 40 for t in targets))
    return ink / len(pixels), coloured / len(pixels)


@pytest.mark.slow
@pytest.mark.browser
def test_pdf_pages_show_the_charts(rendered, tmp_path):
    from analytics_lib.reporting.pdf import inspect_page

    charts_in_report = inspect_page(rendered.path / rendered.artefacts["html"]).charts
    pages = _page_images(rendered.path / rendered.artefacts["pdf"], tmp_path)
    assert len(pages) >= 3
    shares = [_chart_coloured_share(p) for p in pages]
    assert all(ink > 0.003 for ink, _ in shares), f"a blank page in the PDF: {shares}"
    chart_pages = sum(1 for _, coloured in shares if coloured > 0.002)
    # a chart is 360 px high and an A4 page prints about 1,000 px: at most two charts fit on a page
    assert chart_pages >= math.ceil(charts_in_report / 2), (chart_pages, charts_in_report, shares)
    ARTIFACTS.mkdir(exist_ok=True)
    pages[0].replace(ARTIFACTS / "monthly_executive-pdf-page-1.png")


@pytest.mark.browser
def test_one_printer_prints_several_reports_and_reports_errors(tmp_path):
    """The runner's printer (a browser started while the notebook executes) prints like render_pdf,
    more than once, and hands back a page's error; a closed printer refuses work."""
    from analytics_lib.reporting.html import RenderError
    from analytics_lib.reporting.pdf import Printer

    good = tmp_path / "good.html"
    good.write_text("<html><body><h1>Report</h1><p>No charts.</p></body></html>", encoding="utf-8")
    broken = tmp_path / "broken.html"  # a chart that is never drawn (no plotly.js)
    broken.write_text('<html><body><div class="pa-chart"></div></body></html>', encoding="utf-8")
    with Printer() as printer:
        for name in ("one.pdf", "two.pdf"):
            check = printer.print(good, tmp_path / name, timeout_s=30)
            assert (tmp_path / name).read_bytes()[:5] == b"%PDF-" and check.external_requests == []
        with pytest.raises(RenderError, match="1 of 1 charts were not drawn"):
            printer.print(broken, tmp_path / "broken.pdf", timeout_s=2)
        assert not (tmp_path / "broken.pdf").exists()
        printer.print(good, tmp_path / "three.pdf", timeout_s=30)  # still usable after an error
    with pytest.raises(RenderError, match="closed"):
        printer.print(good, tmp_path / "four.pdf")
