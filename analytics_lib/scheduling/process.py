"""Stopping a job's whole process tree.

A report attempt is a tree: the job process, the notebook process (papermill, in its own session)
and the notebook's kernel (in another session). Killing one process group would leave the others
running, so the tree is collected from ``/proc`` (parent links) first and then stopped: SIGTERM,
a short grace, SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _parents() -> dict[int, int]:
    """pid -> parent pid for every process we can see (Linux /proc)."""
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) > 1:
            out[int(entry.name)] = int(rest[1])
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first, then grandchildren, ...)."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    out, frontier = [], [pid]
    while frontier:
        nxt = []
        for p in frontier:
            for c in children.get(p, []):
                out.append(c)
                nxt.append(c)
        frontier = nxt
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        state = Path(f"/proc/{pid}/stat").read_text()
        return state[state.rfind(")") + 2:].split()[0] != "Z"
    except OSError:
        return True


def terminate_tree(pid: int, grace: float = 5.0, include_root: bool = True) -> list[int]:
    """SIGTERM ``pid`` and all its descendants, then SIGKILL what is left after ``grace`` s."""
    tree = descendants(pid) + ([pid] if include_root else [])
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 2.0)
        while time.monotonic() < deadline and any(alive(p) for p in tree):
            time.sleep(0.05)
        if not any(alive(p) for p in tree):
            break
    return tree


def die_with_parent() -> None:
    """``preexec_fn`` for a child: SIGTERM it when its parent dies (Linux; no-op elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
