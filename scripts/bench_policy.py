"""Benchmark the trained policy; prints figures and writes JSON.

    .venv/bin/python scripts/bench_policy.py --checkpoint runs/langnav-small/policy \
        --run runs/langnav-small --out runs/bench_policy.json
"""

import argparse
import tempfile

from vlnav.policy.bench import run

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", default="runs/langnav-small/policy")
    p.add_argument("--run", default="runs/langnav-small", help="training run (its expert data)")
    p.add_argument("--out", default="runs/bench_policy.json")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--eval-episodes", type=int, default=1839, help="0 skips the evaluation")
    p.add_argument("--batch", type=int, default=32, help="episodes decided together per worker")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (the policy's)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(a.checkpoint, a.run, tmp, a.workers, a.eval_episodes, a.out, a.batch, a.dtype, a.device)
