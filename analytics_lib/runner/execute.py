"""Execute one notebook with papermill in a child process, so that an overall timeout can end it
(and its kernel) for sure; papermill's own per-cell timeout bounds each cell.

Usage (internal): ``python -m analytics_lib.runner.execute INPUT OUTPUT PARAMS_JSON CELL_TIMEOUT [--progress]``"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from analytics_lib.config import PROJECT_ROOT

KERNEL = "python3"


class ExecutionError(RuntimeError):
    """The notebook raised, timed out, or its kernel died."""


def execute(input_path: Path, output_path: Path, parameters: dict, cell_timeout: int, overall_timeout: int,
            progress: bool = False, env: dict[str, str] | None = None) -> float:
    """Run the notebook; returns seconds taken. Raises :class:`ExecutionError` with the cell's
    error (not its traceback) on failure."""
    params_file = output_path.with_name(".parameters.json")
    params_file.write_text(json.dumps(parameters, default=str), encoding="utf-8")
    cmd = [sys.executable, "-m", "analytics_lib.runner.execute", str(input_path), str(output_path),
           str(params_file), str(int(cell_timeout))] + (["--progress"] if progress else [])
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=None if progress else subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=overall_timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise ExecutionError(f"timed out after {overall_timeout} s (overall timeout); the kernel was stopped") from None
    finally:
        params_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        message = _last_error(out) or _last_line(err) or f"the notebook process exited with {proc.returncode}"
        raise ExecutionError(message)
    return time.monotonic() - started


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_error(out: str | None) -> str:
    for line in reversed((out or "").splitlines()):
        if line.startswith("ERROR: "):
            return line[len("ERROR: "):]
    return ""


def _last_line(err: str | None) -> str:
    lines = [ln for ln in (err or "").splitlines() if ln.strip() and "WARNING" not in ln]
    return lines[-1][:500] if lines else ""


def _main(argv: list[str]) -> int:
    import logging
    import warnings

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    warnings.filterwarnings("ignore")
    logging.getLogger("papermill").setLevel(logging.ERROR)
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    input_path, output_path, params_path, cell_timeout = argv[:4]
    progress = "--progress" in argv[4:]
    parameters = json.loads(Path(params_path).read_text(encoding="utf-8"))
    try:
        pm.execute_notebook(input_path, output_path, parameters=parameters, kernel_name=KERNEL,
                            execution_timeout=int(cell_timeout), progress_bar=progress, log_output=False,
                            cwd=str(PROJECT_ROOT), report_mode=True)
    except PapermillExecutionError as exc:
        print(f"ERROR: cell {exc.exec_count}: {exc.ename}: {exc.evalue}"[:1000])
        return 1
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        name = type(exc).__name__
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "Timeout" in name or "timed out" in text.lower():
            print(f"ERROR: a cell ran longer than {cell_timeout} s (cell timeout)")
        else:
            print(f"ERROR: {name}: {text}"[:1000])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
