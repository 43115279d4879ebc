"""`make bench`: every benchmark, then one table of each measure, its baseline, the ratio and the goal.

Each benchmark measures its own baselines in the same run (raw psycopg, a bare Django view, a
bare Channels consumer, small sizes) and appends its rows to a summary file; this script runs
them one after the other (never at once: they would measure each other) and prints the table.

    .venv/bin/python bench/run_all.py            # the full sizes (25-45 min on a 2-core machine)
    .venv/bin/python bench/run_all.py --quick    # smaller sizes, under 3 minutes
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = [
    ["bench_writes.py", "--seconds", "8"],
    ["bench_fanout.py", "--sizes", "1,100,1000", "--events", "40"],
    ["bench_pages.py", "--big", "1000000"],
    ["bench_retention.py", "--eligible", "1000000"],
    ["bench_bulk.py", "--tasks", "10000"],
]
QUICK = [
    ["bench_writes.py", "--seconds", "3", "--agents", "4"],
    ["bench_fanout.py", "--sizes", "1,100", "--events", "20", "--idle-seconds", "10", "--idle-settle", "2"],
    ["bench_pages.py", "--big", "100000", "--repeat", "3"],
    ["bench_retention.py", "--seed", "3000", "--eligible", "10000", "--baseline", "5000"],
    ["bench_bulk.py", "--tasks", "2000", "--rounds", "1"],
]


def machine() -> str:
    cores = os.cpu_count()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{cores} cores, {model}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (under 3 minutes)")
    parser.add_argument("--only", help="run only benchmarks whose file name contains this")
    args = parser.parse_args()
    plan = [cmd for cmd in (QUICK if args.quick else FULL) if not args.only or args.only in cmd[0]]
    summary = Path(tempfile.mkstemp(prefix="bench-summary-", suffix=".jsonl")[1])
    env = {**os.environ, "BENCH_SUMMARY": str(summary)}
    failed = []
    started = time.perf_counter()
    for cmd in plan:
        print(f"\n=== {' '.join(cmd)}", flush=True)
        began = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / cmd[0]), *cmd[1:]], env=env)
        print(f"=== {cmd[0]}: {time.perf_counter() - began:.0f} s, exit {code}", flush=True)
        if code:
            failed.append(cmd[0])
    rows = [json.loads(line) for line in summary.read_text().splitlines() if line.strip()]
    summary.unlink()
    print(f"\nTaskdesk benchmarks, {date.today().isoformat()}, {machine()}")
    print(f"({'quick' if args.quick else 'full'} run, {time.perf_counter() - started:.0f} s)\n")
    widths = (44, 34, 30, 6, 26)
    header = ("measure", "value", "baseline (same run)", "ratio", "goal")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " | met")
    print("-|-".join("-" * w for w in widths) + "-|----")
    for row in rows:
        ratio = f"{row['ratio']:.3f}" if isinstance(row["ratio"], (int, float)) else "-"
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        cells = (row["measure"], row["value"], row["baseline"], ratio, row["goal"])
        print(" | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + f" | {met}")
    if failed:
        sys.exit(f"\nfailed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
