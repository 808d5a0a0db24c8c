"""Where ``comprehensive_analytics`` spends its time: every SQL statement of a warm run, timed.

``python -m tests.benchmarks.profile_metrics WAREHOUSE [--period 2025-05] [--runs 2]``

Runs the suite once to warm up (history tables, OS cache), then ``--runs`` more times with every
statement the session executes timed, and prints the slowest statements of the last run with the
total. Not a test; the numbers feed docs/performance.md.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import defaultdict

from tests.benchmarks.run import _last_full_month


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("warehouse")
    parser.add_argument("--period", help="period label (default: the last full month)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--cold", action="store_true", help="also list the statements of the first call")
    ns = parser.parse_args()

    from analytics_lib import metrics as m
    from analytics_lib.warehouse import Warehouse

    with m.MetricSession.open(Warehouse(ns.warehouse)) as session:
        period = m.Period.parse(ns.period, session.settings.timezone) if ns.period else _last_full_month(session)[0]
        timings: dict[str, float] = defaultdict(float)
        cpu_times: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        real = session.con
        from importlib import resources

        from analytics_lib.metrics.engine import load_queries

        names = {}
        for f in resources.files("analytics_lib.metrics").joinpath("sql").iterdir():
            if f.name.endswith(".sql"):
                for name, text in load_queries(f.name[:-4]).items():
                    names[text] = f"{f.name[:-4]}.{name}"

        class Timed:
            def __getattr__(self, name):  # type: ignore[no-untyped-def]
                return getattr(real, name)

            def execute(self, sql, params=None):  # type: ignore[no-untyped-def]
                key = names.get(sql) or " ".join(str(sql).split())[:110]
                start, cpu = time.perf_counter(), _cpu()
                out = real.execute(sql, params) if params is not None else real.execute(sql)
                timings[key] += time.perf_counter() - start
                cpu_times[key] += _cpu() - cpu
                counts[key] += 1
                return out

        session.con = Timed()  # type: ignore[assignment]
        start, cpu = time.perf_counter(), _cpu()
        m.comprehensive_analytics(period, session=session)
        print(f"cold (first call, builds history tables): {time.perf_counter() - start:.2f} s "
              f"(process CPU {_cpu() - cpu:.2f} s)")
        if ns.cold:
            _report(timings, cpu_times, counts, ns.top, "first call")
        for run in range(ns.runs):
            timings.clear()
            cpu_times.clear()
            counts.clear()
            session.forget_scope()
            start, cpu = time.perf_counter(), _cpu()
            m.comprehensive_analytics(period, session=session)
            total = time.perf_counter() - start
            print(f"warm run {run + 1}: {total:.2f} s (process CPU {_cpu() - cpu:.2f} s)")
        session.con = real
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
        _report(timings, cpu_times, counts, ns.top, "last run")


def _report(timings: dict[str, float], cpu_times: dict[str, float], counts: dict[str, int], top: int,
            label: str) -> None:
    print(f"statements ({label}), total {sum(timings.values()):.2f} s, CPU {sum(cpu_times.values()):.2f} s:")
    for key, secs in sorted(timings.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{secs:7.3f} s  {cpu_times[key]:6.3f} s CPU  x{counts[key]:<3} {key}")


if __name__ == "__main__":
    main()
