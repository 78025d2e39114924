"""``vlnav perception ...`` and ``vlnav describe``: train and evaluate captioners, caption
photos. Imports stay light (argparse only); torch is imported when a command runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlnav import VlnavError


def _env_and_train_config(args: argparse.Namespace):
    from vlnav.cli import _env_config
    from vlnav.config import from_dict
    from vlnav.perception.learned import TrainCaptionerConfig

    env = _env_config(args.env, args.overrides, args.sim)
    flags = {
        "frames": args.frames,
        "minutes": args.minutes,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "eval_frames": args.eval_frames,
        "seed": args.seed,
        "threads": args.threads,
    }
    data = {k: v for k, v in flags.items() if v is not None}
    if args.size is not None:
        data["model"] = {"image_size": args.size}
    return env, from_dict(TrainCaptionerConfig, data, "train")


def cmd_train_captioner(args: argparse.Namespace) -> None:
    from vlnav.perception.learned import train_captioner

    env, cfg = _env_and_train_config(args)
    if args.fresh:
        for name in ("train_state.pt",):
            (Path(args.out) / name).unlink(missing_ok=True)
    res = train_captioner(env, cfg, args.out, progress=True, resume=not args.fresh)
    print(_score_line(res))
    print(f"checkpoint and eval.json in {args.out}")


def _score_line(res: dict) -> str:
    line = f"trained {res['steps']} steps in {res['train_seconds'] / 60:.1f} min"
    s = res.get("val_unseen")
    if s:
        line += (
            f"; val_unseen ({s['captions']} frames): object P/R/F1 "
            f"{s['object_precision']:.3f}/{s['object_recall']:.3f}/{s['object_f1']:.3f}, "
            f"room accuracy {s['room_accuracy']:.3f}, BLEU-4 {s['bleu4']:.3f}"
        )
    return line


def cmd_eval_captioner(args: argparse.Namespace) -> None:
    from vlnav.cli import _env_config
    from vlnav.perception import make_captioner
    from vlnav.perception.frames import render_frames
    from vlnav.perception.learned import evaluate_captioner
    from vlnav.sampler import prepare_data, scene_ids

    env = _env_config(args.env, args.overrides, args.sim)
    captioner = make_captioner(args.captioner)
    if "rgb" not in captioner.needs:
        raise VlnavError(f"eval-captioner scores pixel captioners; '{args.captioner}' is not one")
    if env.scenes.procedural:
        prepare_data(env, progress=True)
    size = args.size or int(getattr(captioner, "image_size", 0) or 128)
    frames = render_frames(
        env, scene_ids(env, args.split), args.frames, size, args.seed, True, f"{args.split} frames"
    )
    scores, _ = evaluate_captioner(captioner.describe, frames, progress=True)
    scores |= {"captioner": args.captioner, "split": args.split, "image_size": size}
    print(json.dumps(scores, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(scores, indent=1))


def read_image(path: str):
    """An image file as an (H, W, 3) uint8 RGB array, or a one-line VlnavError."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise VlnavError(f"image not found: {p}")
    try:
        import imageio.v3 as iio

        img = np.asarray(iio.imread(p))
    except Exception as e:  # noqa: BLE001
        raise VlnavError(
            f"cannot read image {p}: {str(e).splitlines()[0] if str(e) else e}"
        ) from None
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3:
        raise VlnavError(f"cannot read image {p}: expected an RGB image, got shape {img.shape}")
    if img.dtype != np.uint8:
        hi = 65535.0 if img.dtype == np.uint16 else (1.0 if img.dtype.kind == "f" else 255.0)
        img = np.clip(img.astype(np.float32) / hi * 255.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[:, :, :3])


def cmd_describe(args: argparse.Namespace) -> None:
    from vlnav.perception import View, make_captioner

    name = args.captioner.partition(":")[0]
    if name == "semantic":
        raise VlnavError(
            "the semantic captioner needs simulator sensors (instance ids and depth), not "
            "photos: use --captioner learned:<checkpoint> | hf:<model> | open_clip:<folder> | open_clip:<model>@<weights>"
        )
    images = [read_image(p) for p in args.images]
    captioner = make_captioner(args.captioner)
    if "rgb" not in captioner.needs:
        raise VlnavError(f"captioner '{args.captioner}' needs simulator sensors, not photos")
    captions = captioner.caption([View(rgb=img) for img in images])
    for path, cap in zip(args.images, captions):
        print(f"{path}: {cap.text}" if len(args.images) > 1 else cap.text)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from vlnav.cli import _add_env_args

    perception = subparsers.add_parser(
        "perception", help="captioners: train and evaluate the learned captioner"
    ).add_subparsers(dest="perception_command", required=True)

    tr = perception.add_parser(
        "train-captioner",
        help="train the learned captioner on frames of the train houses (resumable)",
        description="Render frames at random poses in the env's train houses, train a small "
        "CNN + transformer captioner on their semantic captions, evaluate on val_unseen houses. "
        "Rerunning with the same --out resumes until the time budget is spent.",
    )
    _add_env_args(tr)
    tr.add_argument("--out", default="runs/captioner", help="checkpoint folder")
    tr.add_argument("--frames", type=int, default=None, help="training frames (default 24000)")
    tr.add_argument("--minutes", type=float, default=None, help="training budget (default 10)")
    tr.add_argument("--max-steps", type=int, default=None, help="stop after N steps")
    tr.add_argument("--size", type=int, default=None, help="input size in pixels (default 64)")
    tr.add_argument("--batch-size", type=int, default=None, help="batch size (default 32)")
    tr.add_argument("--eval-frames", type=int, default=None, help="val_unseen frames (1200)")
    tr.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    tr.add_argument("--threads", type=int, default=None, help="torch threads (0: auto)")
    tr.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    tr.set_defaults(func=cmd_train_captioner)

    ev = perception.add_parser(
        "eval-captioner", help="score a pixel captioner against semantic captions"
    )
    _add_env_args(ev)
    ev.add_argument("--captioner", default="learned:runs/captioner", help="captioner spec")
    ev.add_argument("--split", default="val_unseen", help="houses of this split")
    ev.add_argument("--frames", type=int, default=600, help="frames to caption")
    ev.add_argument("--size", type=int, default=None, help="render size (default: its own)")
    ev.add_argument("--seed", type=int, default=1, help="pose sampling seed")
    ev.add_argument("--out", default=None, help="write the scores as JSON here")
    ev.set_defaults(func=cmd_eval_captioner)

    ds = subparsers.add_parser(
        "describe",
        help="caption photos with a pixel captioner",
        description="Print the caption of each image (PNG, JPEG, ...). Pixel captioners only: "
        "learned:<checkpoint>, hf:<model id or folder>, open_clip:<folder> | open_clip:<model>@<weights>.",
    )
    ds.add_argument("images", nargs="+", help="image files")
    ds.add_argument(
        "--captioner",
        default="learned:runs/captioner",
        help="learned:<ckpt> | hf:<model> | open_clip:<folder> | open_clip:<model>@<weights>",
    )
    ds.set_defaults(func=cmd_describe)


if __name__ == "__main__":  # pragma: no cover
    from vlnav.cli import main

    sys.exit(main())
