"""``vlnav instruct``: synthetic instructions or imagined trajectories for an episode split.

Imports stay light (argparse only) until the command runs.
"""

from __future__ import annotations

import argparse

DEFAULT_ENV = "envs/procedural.yaml"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "instruct",
        help="write instructions with a speaker (template | openai:<model> | hf:<id or path>)",
        description=(
            "Write synthetic instructions for an episode split (or imagined text trajectories "
            "with --mode imagine). Rerunning a killed run resumes from its cache."
        ),
    )
    p.add_argument(
        "--episodes",
        default="train",
        help="an R2R-CE .json.gz file or a split name (default train)",
    )
    p.add_argument("--env", default=None, help=f"environment YAML (default: {DEFAULT_ENV})")
    p.add_argument(
        "--speaker",
        default=None,
        help="template | openai:<model> | hf:<id or path> (default template)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mode", choices=("instruction", "imagine"), default=None)
    p.add_argument("--limit", type=int, default=None, help="first N episodes only")
    p.add_argument("--concurrency", type=int, default=None, help="requests in flight (openai)")
    p.add_argument("--base-url", default=None, help="server URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    p.add_argument("--config", default=None, help="instruct config YAML (vlnav/instruct/config.py)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value: instruct.<key> for the instruct config (e.g. "
        "instruct.openai.timeout=30), anything else for the env (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_instruct)


def build_config(args: argparse.Namespace):
    """(InstructConfig, EnvConfig) from the command line."""
    from pathlib import Path

    from vlnav.config import EnvConfig, load_config
    from vlnav.instruct.config import InstructConfig

    mine = [o.removeprefix("instruct.") for o in args.overrides if o.startswith("instruct.")]
    rest = [o for o in args.overrides if not o.startswith("instruct.")]
    for flag, key in (
        ("speaker", "speaker"),
        ("mode", "mode"),
        ("concurrency", "concurrency"),
        ("seed", "seed"),
        ("base_url", "openai.base_url"),
    ):
        value = getattr(args, flag)
        if value is not None:
            mine.append(f"{key}={value}")
    config = load_config(InstructConfig, args.config, mine)
    env_path = args.env or (DEFAULT_ENV if Path(DEFAULT_ENV).is_file() else None)
    env = load_config(EnvConfig, env_path, rest)
    return config, env


def cmd_instruct(args: argparse.Namespace) -> None:
    from vlnav.instruct.pipeline import run_instruct

    config, env = build_config(args)
    result = run_instruct(
        config, env, args.episodes, args.out, limit=args.limit, progress=not args.no_progress
    )
    print(result.report())
