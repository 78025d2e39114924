"""Benchmark the builtin simulator; prints figures and writes JSON.

.venv/bin/python scripts/bench_sim.py --out runs/bench_sim.json
"""

import argparse
import tempfile

from vlnav.bench import run_benchmarks, summary

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="runs/bench_sim.json", help="JSON output path")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per figure")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = run_benchmarks(tmp, a.seconds, a.workers, a.out)
    print(summary(res))
    print(f"wrote {a.out}")
