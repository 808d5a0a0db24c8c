"""Reports end to end: parameters refused before a kernel starts, every report notebook executed
on a small fixture warehouse and rendered to offline HTML and PDF, failures kept without replacing
the last good output, timeouts, reruns on the recorded warehouse versions, and the portal."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import nbformat
import pytest

from analytics_lib.config import PROJECT_ROOT, get_settings
from analytics_lib.reporting.custom import DefinitionError, load_definition
from analytics_lib.reporting.html import external_references
from analytics_lib.runner import ParameterError, RunError, catalogue, rerun, run_report
from analytics_lib.runner.parameters import read_parameters, validate
from analytics_lib.runner.runs import all_runs, latest

REPORTS = sorted(catalogue())
#: the fixture's data ends on 2026-10-31; reports run as if it were the next morning
NOW = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)
ARTIFACTS = PROJECT_ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def fixture_warehouse(tmp_path_factory) -> Path:
    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse

    root = tmp_path_factory.mktemp("reports") / "warehouse"
    generate(Warehouse(root), customers=900, months=14, seed=11, end=date(2026, 10, 31))
    return root


@pytest.fixture
def settings(fixture_warehouse: Path, tmp_path: Path):
    return replace(get_settings().with_warehouse(fixture_warehouse), outputs=tmp_path / "outputs")


def test_every_report_notebook_is_in_the_catalogue_with_typed_parameters():
    assert set(REPORTS) >= {"daily_operations", "weekly_business", "monthly_executive", "quarterly_board",
                            "comprehensive_analytics", "cohorts_retention", "fraud_review", "custom_report"}
    for report in catalogue().values():
        assert all(p.type_name != "any" for p in report.parameters.values()), f"{report.name}: annotate every parameter"
        for name in ("warehouse", "as_of", "now", "run_dir", "exports"):
            assert name in report.parameters, f"{report.name} lacks the runner parameter {name}"


# -- parameters are refused before anything runs ----------------------------------------------


@pytest.mark.parametrize("assignments, message", [
    (["bogus=1"], "unknown parameter 'bogus'"),
    (["live_hours=abc"], "parameter 'live_hours' must be int"),
    (["filters=[1, 2]"], "parameter 'filters' must be dict"),
    (["as_of={}"], "set by the runner"),
    (["noequals"], "key=value"),
    (["timezone=Mars/Olympus_Mons"], "unknown time zone 'Mars/Olympus_Mons'"),
    (["period=someday"], "cannot read period 'someday'"),
    (["filters={colour: [red]}"], "unknown filter 'colour'"),
    (["start=2026-10-01"], "give both start and end"),
])
def test_bad_parameters_are_refused_before_a_run_folder_exists(settings, assignments, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        run_report("daily_operations", assignments=assignments, settings=settings, now=NOW)
    assert not settings.outputs.exists() or not any(settings.outputs.rglob("run.json"))


def test_missing_required_parameter_and_bad_formats_and_names(settings, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ParameterError, match="missing required parameter 'definition'"):
        run_report("custom_report", parameters_file=empty, settings=settings, now=NOW)
    with pytest.raises(ParameterError, match="parameter 'definition' must be str"):
        run_report("custom_report", values={"definition": None}, settings=settings, now=NOW)
    with pytest.raises(RunError, match="unknown output format 'docx'"):
        run_report("daily_operations", formats="html,docx", settings=settings, now=NOW)
    for name in ("nope", "../etc", "Daily Operations", ""):
        with pytest.raises(RunError):
            run_report(name, settings=settings, now=NOW)
    bad_file = tmp_path / "p.yaml"
    bad_file.write_text("- just\n- a list\n")
    with pytest.raises(ParameterError, match="mapping"):
        run_report("daily_operations", parameters_file=bad_file, settings=settings, now=NOW)


def test_parameter_types_are_checked_from_annotations():
    declared = read_parameters(PROJECT_ROOT / "notebooks/reports/fraud_review.ipynb")
    assert declared["review_threshold"].type_name == "float"
    assert validate(declared, {"review_threshold": 70})["review_threshold"] == 70.0  # an int is a float
    with pytest.raises(ParameterError, match="must be float"):
        validate(declared, {"review_threshold": True})
    assert validate(declared, {"start": None})["start"] is None  # str | None accepts None
    with pytest.raises(ParameterError, match="must be str"):
        validate(declared, {"period": None})


@pytest.mark.parametrize("text, field", [
    ("title: x\nmetrics: [gross_revenue, made_up]\n", "metrics"),
    ("title: x\ndimensions: [planet]\n", "dimensions"),
    ("title: x\nfilters: {colour: [red]}\n", "filters"),
    ("title: x\nexports: [docx]\n", "exports"),
    ("title: x\nvisualisations: [{type: bar, dimension: country}]\n", "visualisations.0"),
    ("title: x\nvisualisations: [{type: radar, dimension: country, metric: volume}]\n", "visualisations.0.type"),
    ("title: x\nunexpected: 1\n", "unexpected"),
    ("metrics: [gross_revenue]\n", "title"),
    ("title: x\nstart: 2026-01-01\n", "definition"),
])
def test_invalid_custom_definitions_name_the_bad_field(tmp_path, text, field):
    path = tmp_path / "def.yaml"
    path.write_text(text)
    with pytest.raises(DefinitionError, match=re.escape(f"field '{field}'")):
        load_definition(path)


def test_custom_definition_errors_for_files(tmp_path):
    with pytest.raises(DefinitionError, match="not found"):
        load_definition(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("title: [unclosed\n")
    with pytest.raises(DefinitionError, match="not valid YAML"):
        load_definition(tmp_path / "bad.yaml")
    with pytest.raises(DefinitionError, match=r"\.yaml"):
        load_definition("/etc/passwd")
    assert load_definition("parameters/custom_report/country_mix.yaml").filters == {"payment_method": ["card"]}


def test_an_invalid_definition_is_refused_before_a_kernel_starts(settings, tmp_path):
    path = tmp_path / "def.yaml"
    path.write_text("title: x\nmetrics: [nonsense]\n")
    with pytest.raises(DefinitionError, match="field 'metrics'"):
        run_report("custom_report", assignments=[f"definition={path}"], settings=settings, now=NOW)
    assert not any(settings.outputs.rglob("run.json")) if settings.outputs.exists() else True


# -- every report runs and renders --------------------------------------------------------------


def _assert_clean(record) -> None:
    folder = record.path
    executed = json.loads((folder / f"{record.report}.ipynb").read_text())
    for cell in executed["cells"]:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", f"{record.report}: {output.get('ename')}: {output.get('evalue')}"
            if output.get("output_type") == "stream":
                text = "".join(output.get("text", ""))
                assert "Traceback" not in text and "Warning" not in text, f"{record.report} printed: {text[:300]}"
    page = (folder / f"{record.report}.html").read_text()
    visible = re.sub(r"<(script|style)\b.*?</\1>", "", page, flags=re.S)
    assert "Traceback" not in visible and "Error" not in visible
    assert external_references(page) == []
    assert 'class="jp-InputArea' not in visible and "rp.setup()" not in visible, "code cells must not be rendered"
    assert page.count("get_plotlyjs") == 0 and page.count("Plotly.newPlot") >= 1


@pytest.mark.slow
@pytest.mark.parametrize("name", REPORTS)
def test_report_runs_and_renders_html_and_pdf(name, settings):
    record = run_report(name, formats="html,pdf,xlsx,json", settings=settings, now=NOW, progress=False)
    assert record.status == "succeeded", record.error
    _assert_clean(record)
    for fmt in ("html", "pdf", "xlsx", "json", "ipynb"):
        assert (record.path / record.artefacts[fmt].split(",")[0]).is_file(), fmt
    assert (record.path / "summary.json").is_file()
    summary = json.loads((record.path / "summary.json").read_text())
    assert summary["warehouse_versions"] == {k: v for k, v in record.warehouse_versions.items()}
    assert summary["summary"], "every report opens with an executive summary"
    pages = subprocess.run(["pdfinfo", str(record.path / record.artefacts["pdf"])], capture_output=True, text=True,
                           check=True).stdout
    assert int(re.search(r"Pages:\s+(\d+)", pages)[1]) >= 1
    run_file = json.loads((record.path / "run.json").read_text())
    assert run_file["status"] == "succeeded" and run_file["code"]["package"]
    assert latest(settings.outputs, name).run_id == record.run_id


@pytest.mark.slow
def test_a_report_on_a_period_without_data_still_renders(settings):
    record = run_report("daily_operations", values={"period": "2030-01-01"}, formats="html", settings=settings,
                        now=NOW, progress=False)
    assert record.status == "succeeded", record.error
    _assert_clean(record)


# -- failures, timeouts ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_failed_run_is_kept_and_never_replaces_the_last_good_output(settings):
    good = run_report("daily_operations", formats="html", settings=settings, now=NOW, progress=False)
    assert good.status == "succeeded"
    # a reporting currency the warehouse has no exchange rates for fails inside the notebook
    failed = run_report("daily_operations", values={"currency": "ZZZ"}, formats="html",
                        settings=settings, now=NOW, progress=False)
    assert failed.status == "failed"
    assert "ZZZ" in failed.error and "Traceback" not in failed.error
    assert failed.path.is_dir() and json.loads((failed.path / "run.json").read_text())["status"] == "failed"
    assert latest(settings.outputs, "daily_operations").run_id == good.run_id
    assert (good.path / "daily_operations.html").is_file()
    portal = (settings.outputs / "index.html").read_text()
    assert failed.run_id in portal and "failed" in portal and good.run_id in portal


@pytest.mark.slow
def test_cell_and_overall_timeouts_stop_the_run(settings):
    record = run_report("comprehensive_analytics", formats="html", settings=settings, now=NOW, cell_timeout=1,
                        progress=False)
    assert record.status == "failed" and "cell timeout" in record.error
    record = run_report("comprehensive_analytics", formats="html", settings=settings, now=NOW, timeout=3,
                        progress=False)
    assert record.status == "failed" and "overall timeout" in record.error
    assert latest(settings.outputs, "comprehensive_analytics") is None


# -- rerun reproduces the numbers on the recorded versions ----------------------------------------


@pytest.mark.slow
def test_rerun_matches_after_new_data_arrives(settings, tmp_path):
    from analytics_lib.warehouse import Warehouse
    from tests.conftest import payment, write_jsonl

    first = run_report("daily_operations", formats="html", settings=settings, now=NOW, progress=False)
    assert first.status == "succeeded", first.error
    before = json.loads((first.path / "summary.json").read_text())
    # a new payment for the same day lands in a copy of the warehouse
    copy = tmp_path / "warehouse-copy"
    shutil.copytree(settings.warehouse, copy)
    moved = replace(settings.with_warehouse(copy), outputs=settings.outputs)
    from analytics_lib.warehouse.ingest import ingest

    records = [payment(f"late_{i}", amount=500.0, createdAt="2026-10-31T12:00:00Z",
                       completedAt="2026-10-31T12:00:02Z") for i in range(5)]
    ingest(write_jsonl(tmp_path / "late.jsonl", records), "platform-json", Warehouse(copy))
    fresh = run_report("daily_operations", formats="html", settings=moved, now=NOW, progress=False)
    after = json.loads((fresh.path / "summary.json").read_text())
    assert after["kpis"]["transactions"] == before["kpis"]["transactions"] + 5
    # rerun of the first run on the copy: same versions, same numbers
    first_moved = first.path / "run.json"
    doc = json.loads(first_moved.read_text())
    doc["warehouse"] = str(copy)
    first_moved.write_text(json.dumps(doc))
    again = rerun(first.run_id, settings=moved)
    assert again.status == "succeeded", again.error
    assert again.rerun_of == first.run_id and again.warehouse_versions == first.warehouse_versions
    repeated = json.loads((again.path / "summary.json").read_text())
    # DuckDB's parallel sums may add in another order: equal to the last few bits of a double
    assert repeated["kpis"].keys() == before["kpis"].keys()
    for key, value in before["kpis"].items():
        assert repeated["kpis"][key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), key
    assert repeated["summary"] == before["summary"]


def test_rerun_of_an_unknown_run_is_a_clear_error(settings):
    with pytest.raises(RunError, match="not a run id"):
        rerun("../../etc", settings=settings)
    with pytest.raises(RunError, match="no run"):
        rerun("20260101T000000Z-abcdef", settings=settings)


# -- portal ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_portal_links_resolve_from_the_file_system(settings):
    run_report("fraud_review", formats="html,json", settings=settings, now=NOW, progress=False)
    portal = settings.outputs / "index.html"
    page = portal.read_text()
    links = re.findall(r'href="([^"#]+)"', page)
    assert links, "the portal links to the runs"
    for link in links:
        assert (portal.parent / link).resolve().is_file(), link
    assert external_references(page) == []
    assert [r.report for r in all_runs(settings.outputs)] == ["fraud_review"]


# -- the CLI --------------------------------------------------------------------------------------


def test_cli_run_errors_are_one_line(settings):
    from click.testing import CliRunner

    from analytics_lib.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["--warehouse", settings.warehouse, "run", "no_such_report"])
    assert result.exit_code != 0 and "unknown report 'no_such_report'" in result.output
    result = runner.invoke(main, ["--warehouse", settings.warehouse, "run", "daily_operations", "-p", "bogus=1"])
    assert result.exit_code != 0 and "unknown parameter 'bogus'" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["reports", "--format", "json"])
    assert result.exit_code == 0 and {r["name"] for r in json.loads(result.output)} == set(REPORTS)


def test_report_notebooks_display_no_widgets_and_tag_their_intro():
    for path in sorted((PROJECT_ROOT / "notebooks" / "reports").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert "notebook-only" in nb.cells[0].metadata.get("tags", []), path.name
        assert not any("ipywidgets" in c.source for c in nb.cells), path.name


# -- start-up cost ---------------------------------------------------------------------------------


def test_the_iri_grammar_loads_only_when_an_iri_is_validated():
    """The runner defers rfc3987_syntax (seconds of grammar compilation on import): nbformat,
    papermill and nbconvert import without it, and jsonschema's IRI check still works."""
    code = """
import sys
import analytics_lib.runner
import nbformat, nbconvert, papermill
real = "rfc3987_syntax.syntax_helpers" in sys.modules
from jsonschema import Draft7Validator
v = Draft7Validator({"format": "iri"}, format_checker=Draft7Validator.FORMAT_CHECKER)
print(real, v.is_valid("http://example.com/a b"), v.is_valid("http://example.com/\\u00e4"),
      "rfc3987_syntax.syntax_helpers" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    assert out.stdout.split() == ["False", "False", "True", "True"]


def test_the_runner_reads_notebooks_without_nbformat():
    """Parameters and the catalogue come from the notebook's JSON (same result as nbformat)."""
    code = "import sys, analytics_lib.runner as r; r.get_report('daily_operations'); r.catalogue(); " \
           "print('nbformat' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    assert out.stdout.strip() == "False"
    for path in sorted((PROJECT_ROOT / "notebooks" / "reports").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert list(read_parameters(path)) == [ln.split(":")[0].split("=")[0].strip()
                                               for ln in cell.source.splitlines() if ln.strip() and ln[0] != "#"]
