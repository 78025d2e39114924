"""Benchmark perception: captions/s per captioner, text observations/s, the learned
captioner's training time and scores on unseen houses; prints figures and writes JSON.

.venv/bin/python scripts/bench_perception.py --out runs/bench_perception.json
.venv/bin/python scripts/bench_perception.py --checkpoint runs/captioner   # skip training
"""

import argparse

from vlnav.config import EnvConfig, load_config
from vlnav.perception.bench import run_perception_bench, summary

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default="envs/procedural.yaml", help="environment YAML")
    p.add_argument("--out", default="runs/bench_perception.json", help="JSON output path")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per figure")
    p.add_argument("--checkpoint", default=None, help="a trained learned captioner (else train)")
    p.add_argument("--train-minutes", type=float, default=10.0, help="training budget")
    p.add_argument("--train-dir", default="runs/bench_captioner", help="where to train it")
    p.add_argument(
        "--pretrained", action="append", default=[], help="further captioners: hf:<model>, ..."
    )
    a = p.parse_args()
    env = load_config(EnvConfig, a.env)
    res = run_perception_bench(
        env, a.out, a.seconds, a.checkpoint, a.train_minutes, a.train_dir, tuple(a.pretrained)
    )
    print(summary(res))
    print(f"wrote {a.out}")
