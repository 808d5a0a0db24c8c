"""Every notebook runs under papermill on a small fixture warehouse (CONVENTIONS.md 7), is
committed without outputs, and stays thin (no def/class, no long SQL)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import nbformat
import pytest

from analytics_lib.config import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").rglob("*.ipynb"))
NOTEBOOKS = [p for p in NOTEBOOKS if ".ipynb_checkpoints" not in p.parts]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_committed_without_outputs_and_thin(path: Path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook with no code"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, "commit notebooks without outputs"
        for line in cell.source.splitlines():
            assert not line.lstrip().startswith(("def ", "class ", "async def ")), f"logic belongs in analytics_lib: {line}"
        assert "ipywidgets" not in cell.source or "dashboards" in path.parts, "report/model notebooks display no widgets"
        upper = cell.source.upper()
        if "SELECT " in upper:
            assert all(len(line) <= 120 for line in cell.source.splitlines() if "SELECT" in line.upper()), \
                "no SQL longer than a line in notebooks"


@pytest.fixture(scope="module")
def fixture_warehouse(tmp_path_factory) -> Path:
    from analytics_lib.synth import generate
    from analytics_lib.warehouse import Warehouse

    root = tmp_path_factory.mktemp("notebooks")
    generate(Warehouse(root / "warehouse"), customers=1500, months=14, seed=3, end=date(2026, 10, 31))
    return root


# report notebooks run through the report runner in tests/test_reports.py (parameters, rendering);
# dashboards run under Voila in the dashboard tests
RUNNABLE = [p for p in NOTEBOOKS if "dashboards" not in p.parts and "reports" not in p.parts]


@pytest.mark.slow
@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_notebook_executes(path: Path, fixture_warehouse: Path, tmp_path: Path):
    import papermill as pm

    out = tmp_path / path.name
    params = {"warehouse": str(fixture_warehouse / "warehouse"), "registry": str(tmp_path / "registry")}
    declared = _parameters(path)
    pm.execute_notebook(str(path), str(out), parameters={k: v for k, v in params.items() if k in declared},
                        kernel_name="python3", progress_bar=False, execution_timeout=600, cwd=str(PROJECT_ROOT))
    executed = json.loads(out.read_text())
    for cell in executed["cells"]:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", f"{path.name}: {output.get('ename')}: {output.get('evalue')}"
            text = "".join(output.get("text", "")) if isinstance(output.get("text"), (list, str)) else ""
            assert "Traceback" not in text, f"{path.name} printed a traceback"


def _parameters(path: Path) -> set[str]:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            return {line.split("=")[0].strip() for line in cell.source.splitlines() if "=" in line and not line.startswith("#")}
    return set()
