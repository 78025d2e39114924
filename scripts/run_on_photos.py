"""Run a trained policy on a folder of photos and print the direction it chooses at each step.

    python scripts/run_on_photos.py --checkpoint runs/langnav-small/policy \\
        --captioner learned:runs/captioner --instruction "Go to the kitchen." photos/

The photos are read in sorted file-name order, 12 per decision: photo k of a step looks
30 * k degrees to the left of the first (shoot ahead, then turn left by 30 degrees between
shots). With fewer than 12 photos, or a last step that is short, the step's photos are
repeated to make 12 (with a note). The loop ends when the agent stops or the photos run out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def read_photo(path: Path):
    """An RGB uint8 array (cv2 reads BGR)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"error: cannot read {path} as an image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def steps_of(paths: list[Path], n: int = 12) -> list[list[Path]]:
    """Groups of ``n`` paths; a short group is filled by repeating its own paths."""
    groups = [paths[i : i + n] for i in range(0, len(paths), n)]
    return [[g[k % len(g)] for k in range(n)] for g in groups]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", type=Path, help="folder of photos, 12 per decision")
    ap.add_argument("--checkpoint", required=True, help="policy checkpoint folder")
    ap.add_argument("--instruction", required=True, help="the navigation instruction")
    ap.add_argument(
        "--captioner",
        default=None,
        help="pixel captioner spec (default: the one the policy was trained with)",
    )
    ap.add_argument("--device", default="cpu", help="torch device of the policy")
    ap.add_argument("--all", action="store_true", help="also print every candidate's caption")
    args = ap.parse_args(argv)

    from transformers.utils import logging as hf_logging

    from vlnav import VlnavError
    from vlnav.deploy import Agent

    hf_logging.disable_progress_bar()  # no "Loading weights" bars between the steps

    if not args.photos.is_dir():
        print(f"error: {args.photos} is not a folder", file=sys.stderr)
        return 2
    paths = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not paths:
        print(
            f"error: no photos ({', '.join(sorted(PHOTO_SUFFIXES))}) in {args.photos}",
            file=sys.stderr,
        )
        return 2
    if len(paths) % 12:
        print(
            f"note: {len(paths)} photos is not a multiple of 12; the last step repeats its "
            f"{len(paths) % 12} photo(s) to make 12 views"
        )
    try:
        agent = Agent.from_checkpoint(args.checkpoint, captioner=args.captioner, device=args.device)
    except VlnavError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    agent.reset(args.instruction)
    print(f"instruction: {args.instruction}")
    for step, group in enumerate(steps_of(paths), start=1):
        action = agent.act([read_photo(p) for p in group])
        if args.all:
            for line in agent.describe().splitlines():
                print(f"    {line}")
        if action.kind == "stop":
            why = " (decision budget reached)" if action.forced else ""
            print(f"step {step}: Stop{why}")
            break
        photo = group[action.view].name
        print(f"step {step}: {action.direction} (view {action.view}, {photo}): {action.caption}")
    else:
        print(f"photos ran out after {len(agent.history)} step(s) without a Stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
