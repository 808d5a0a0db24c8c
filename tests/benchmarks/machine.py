"""Describe the machine a benchmark ran on (for docs/performance.md)."""

from __future__ import annotations

import os
import platform
from importlib.metadata import version


def describe() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = "?"
    try:
        with open("/proc/meminfo") as handle:
            kb = int(handle.readline().split()[1])
            mem_gb = f"{kb / 1024 / 1024:.0f} GB"
    except (OSError, ValueError, IndexError):
        pass
    libs = {name: version(name) for name in ("duckdb", "deltalake", "pandas", "pyarrow")}
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        **libs,
    }
