"""Benchmark: ``payment-analytics run daily_operations`` end to end, as a scheduler runs it.

Times the whole command (process start to HTML and PDF written, the command's exit) and, from
each run's ``run.json``, where the time went: before the run started (imports, parameter
validation, warehouse versions), notebook execution (child process, kernel start, the notebook),
HTML and PDF. Also the command line's own start-up (``--help``) and how fast a bad parameter is
refused. Every row carries the CPU time of the processes involved (the command and everything it
waited for: papermill's child, the kernel, the browser) and the load average before and after, so
that wall-clock time measured on a shared machine can be read.

Called by ``tests/benchmarks/run.py`` (stage ``report``) as ``run(warehouse, period)``; on its own::

    python -m tests.benchmarks.report_suite /tmp/b10m/generated 2026-10-30 --runs 3

Run folders go to ``PAYMENT_ANALYTICS_OUTPUTS`` (default ``outputs/``, git-ignored) unless
``outputs`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REPORT = "daily_operations"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _command(warehouse: str, *args: str) -> list[str]:
    # this checkout's code (the cwd comes first on sys.path with -m), like the installed script
    return [sys.executable, "-m", "analytics_lib.cli", "--warehouse", warehouse, *args]


def _timed(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    load_before = _load()
    cpu = _children_cpu()
    wall_start = time.time()
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu": _children_cpu() - cpu, "load_before": load_before, "load_after": _load(),
            "wall_start": wall_start, "wall_end": wall_start + seconds, "returncode": proc.returncode,
            "stdout": proc.stdout, "stderr": proc.stderr}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def _loads(samples: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['load_before']:.1f}->{s['load_after']:.1f}" for s in samples)


def _row(stage: str, samples: list[dict[str, Any]], key: str = "seconds", cpu: bool = True, note: str = "") -> dict:
    return {"stage": stage, "seconds": _median([s[key] for s in samples]),
            "cpu": _median([s["cpu"] for s in samples]) if cpu else None,
            "all": [round(s[key], 2) for s in samples], "load": _loads(samples), "note": note}


def run(warehouse: Path | str, period: str, runs: int = 3, formats: str = "html,pdf",
        outputs: Path | str | None = None) -> dict[str, Any]:
    """Run ``daily_operations`` for ``period`` ``runs`` times through the CLI and time it.

    Returns ``{"rows": [...], "runs": [...]}``: each row has ``stage``, ``seconds`` (median),
    ``cpu`` (median CPU seconds of the command and its children, None where the stage is a part of
    a run), ``all`` (every sample), ``load`` (load average before->after each sample) and ``note``;
    ``runs`` holds each run's samples and ``run.json`` timings.
    """
    warehouse = str(warehouse)
    env = dict(os.environ)
    if outputs is not None:
        env["PAYMENT_ANALYTICS_OUTPUTS"] = str(outputs)
    env.pop("PAYMENT_ANALYTICS_WAREHOUSE", None)  # --warehouse says which

    startup = [_timed(_command(warehouse, "--help"), env) for _ in range(3)]
    refused = [_timed(_command(warehouse, "run", REPORT, "-p", "no_such_parameter=1"), env) for _ in range(3)]
    for sample in refused:
        if sample["returncode"] == 0 or "unknown parameter" not in sample["stderr"] + sample["stdout"]:
            raise RuntimeError(f"a bad parameter was not refused: {sample['stderr'][-500:]}")

    samples: list[dict[str, Any]] = []
    for _ in range(runs):
        sample = _timed(_command(warehouse, "run", REPORT, "-p", f"period={period}", "--format", formats,
                                 "--output", "json"), env)
        if sample["returncode"] != 0:
            raise RuntimeError(f"{REPORT} {period} failed:\n{sample['stdout'][-2000:]}\n{sample['stderr'][-2000:]}")
        out = json.loads(sample["stdout"])
        record = json.loads((Path(out["folder"]) / "run.json").read_text(encoding="utf-8"))
        started = datetime.fromisoformat(record["started_at"]).timestamp()
        finished = datetime.fromisoformat(record["finished_at"]).timestamp()
        timings = record.get("timings", {})
        sample.update(
            run_id=record["run_id"], folder=out["folder"],
            before_run=started - sample["wall_start"],  # imports, validation, versions, run folder
            run=float(record["duration_s"]),
            execute=float(timings.get("execute_s", 0.0)),
            html=float(timings.get("html_s", 0.0)),
            pdf=float(timings.get("pdf_s", 0.0)),
            after_run=sample["wall_end"] - finished,  # portal, exit
            timings=timings,
        )
        for key in ("stdout", "stderr"):
            sample.pop(key)
        samples.append(sample)

    rows = [
        _row("`payment-analytics --help` (CLI start-up)", startup),
        _row("bad parameter refused (`run daily_operations -p no_such_parameter=1`)", refused),
        _row(f"`run {REPORT} -p period={period} --format {formats}`: command, end to end", samples,
             note="CPU: the command, papermill's child, the kernel and the browser"),
        _row("  before the run starts (imports, parameters, warehouse versions, run folder)", samples,
             "before_run", cpu=False),
        _row("  run (run.json duration_s)", samples, "run", cpu=False),
        _row("    notebook execution (child process, kernel start, cells)", samples, "execute", cpu=False),
        _row("    HTML", samples, "html", cpu=False),
        _row("    PDF (browser started during execution)", samples, "pdf", cpu=False),
        _row("  after the run (portal, exit)", samples, "after_run", cpu=False),
    ]
    return {"warehouse": warehouse, "period": period, "formats": formats, "rows": rows,
            "runs": [{k: v for k, v in s.items() if k not in ("wall_start", "wall_end")} for s in samples]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("warehouse")
    parser.add_argument("period", help="a day, e.g. 2026-10-30")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--formats", default="html,pdf")
    parser.add_argument("--outputs", default=None, help="run folders (default $PAYMENT_ANALYTICS_OUTPUTS or outputs/)")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    a = parser.parse_args(argv)
    result = run(a.warehouse, a.period, runs=a.runs, formats=a.formats, outputs=a.outputs)
    if a.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{REPORT} {a.period} on {a.warehouse} ({a.runs} runs; {os.cpu_count()} cores)")
    print(f"{'stage':<88} {'median s':>9} {'CPU s':>7}  samples / load before->after")
    for r in result["rows"]:
        cpu = "" if r["cpu"] is None else f"{r['cpu']:.2f}"
        print(f"{r['stage']:<88} {r['seconds']:>9.2f} {cpu:>7}  {r['all']} / {r['load']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
