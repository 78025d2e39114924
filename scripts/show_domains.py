"""Render one pose in rendering domains A, B and C side by side (runs/domains.png).

.venv/bin/python scripts/show_domains.py
.venv/bin/python scripts/show_domains.py --envs envs/procedural.yaml envs/procedural-noisy.yaml \
    --scene house_0010 --position 7.38 0 9.12 --heading 0 --out runs/domains.png
"""

import argparse
import math

from vlnav.sim.domains import compare_figure

DEFAULT_ENVS = [
    "envs/procedural.yaml",
    "envs/procedural-textured.yaml",
    "envs/procedural-noisy.yaml",
]

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--envs", nargs="+", default=DEFAULT_ENVS, help="environment files, in order")
    p.add_argument("--scene", default=None, help="scene id (default: first val_unseen episode)")
    p.add_argument("--position", type=float, nargs=3, default=None, help="x y z of the agent")
    p.add_argument("--heading", type=float, default=0.0, help="heading in degrees")
    p.add_argument("--size", type=int, default=224, help="image size in pixels")
    p.add_argument("--out", default="runs/domains.png", help="PNG to write")
    a = p.parse_args()
    path = compare_figure(
        a.envs, a.scene, a.position, math.radians(a.heading), out=a.out, size=a.size
    )
    print(f"wrote {path}")
