"""Benchmark the speakers of ``vlnav instruct``; prints figures and writes JSON.

.venv/bin/python scripts/bench_instruct.py --out runs/bench_instruct.json
"""

import argparse

from vlnav.instruct.bench import run_benchmarks, summary

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="runs/bench_instruct.json", help="JSON output path")
    p.add_argument("--episodes", type=int, default=300, help="episodes for the template figures")
    p.add_argument("--requests", type=int, default=200, help="requests per openai figure")
    a = p.parse_args()
    res = run_benchmarks(a.episodes, a.requests, a.out)
    print(summary(res))
    print(f"wrote {a.out}")
