"""The ``vlnav`` command line: ``vlnav <command> --help`` for each command's options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlnav import VlnavError

DEFAULT_ENV = "envs/procedural.yaml"
# modules that add subcommands (each defines add_parser(subparsers)); imports must stay light
SUBCOMMAND_MODULES = ("vlnav.instruct.cli", "vlnav.perception.cli")


def _env_config(path: str | None, overrides: list[str], sim: str | None = None):
    from vlnav.config import EnvConfig, load_config

    if path is None and Path(DEFAULT_ENV).is_file():
        path = DEFAULT_ENV
    if sim is not None:
        overrides = [*overrides, f"backend={sim}"]
    return load_config(EnvConfig, path, overrides)


def _add_env_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default=None, help=f"environment YAML (default: {DEFAULT_ENV})")
    p.add_argument(
        "--sim", default=None, help="simulator backend: builtin | habitat (overrides the env's)"
    )
    _add_set_arg(p, "sensor.width=128")


def _add_set_arg(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. --set {example} (repeatable)",
    )


def cmd_scenes_generate(args: argparse.Namespace) -> None:
    from vlnav.config import from_dict
    from vlnav.scenes.generator import GeneratorConfig, generate_houses

    cfg = from_dict(GeneratorConfig, {}, "generator")
    paths = generate_houses(args.count, args.seed, Path(args.out), cfg, progress=True)
    print(f"wrote {len(paths)} houses to {args.out}")


def cmd_episodes_sample(args: argparse.Namespace) -> None:
    from vlnav.episodes import load_episodes
    from vlnav.sampler import SPLITS, prepare_data

    cfg = _env_config(args.env, args.overrides, args.sim)
    prepare_data(cfg, force=args.force)
    for split in SPLITS:
        path = cfg.episodes_path(split)
        print(f"{split:>10}: {len(load_episodes(path).episodes):5d} episodes  {path}")


def cmd_eval(args: argparse.Namespace) -> None:
    from vlnav.evaluate import evaluate
    from vlnav.metrics import format_table
    from vlnav.sampler import prepare_data

    cfg = _env_config(args.env, args.overrides, args.sim)
    if cfg.backend == "habitat":  # say how to install it before generating any data
        from vlnav.sim.habitat import require_habitat_sim

        require_habitat_sim()
    if cfg.scenes.procedural and not cfg.episodes_path(args.split).is_file():
        prepare_data(cfg)
    agent, kwargs = args.agent, {}
    if args.policy:
        from vlnav.policy.agent import resolve_device

        resolve_device(args.device)  # a GPU torch does not see fails here, before any work
        agent, kwargs = "policy", {"checkpoint": args.policy, "dtype": args.dtype}
        if args.device != "cpu":
            kwargs["device"] = args.device
        if args.stop_bias is not None:
            kwargs["stop_bias"] = args.stop_bias
        if args.stop_gate is not None:
            kwargs["stop_gate"] = args.stop_gate
        from vlnav.policy.model import NavPolicy

        NavPolicy.load(args.policy)  # a bad checkpoint fails here, before any work
    res = evaluate(
        cfg,
        agent,
        args.split,
        args.episodes,
        args.workers,
        args.out,
        agent_kwargs=kwargs,
        progress=True,
        batch=args.batch if args.policy else 1,
        shard=_shard(args.shard),
        restart=args.restart,
    )
    print(format_table({res.agent: res.metrics}))
    print(f"records and metrics in {res.out_dir}")


def cmd_train(args: argparse.Namespace) -> None:
    from vlnav.train import Trainer, load_train_config

    cfg = load_train_config(args.config, args.overrides)
    Trainer(cfg).run()


def _shard(text: str | None) -> tuple[int, int]:
    from vlnav import VlnavError

    if not text:
        return (0, 1)
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise VlnavError(f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    return k, n


def cmd_metrics(args: argparse.Namespace) -> None:
    from vlnav.evaluate import merge_records
    from vlnav.metrics import format_table

    res = merge_records(args.folders, args.out)
    print(format_table({res.agent: res.metrics}))
    print(f"{len(res.records)} episodes merged into {res.out_dir}")


def cmd_transfer(args: argparse.Namespace) -> None:
    from vlnav.transfer import main

    main(args.config, args.overrides)


def cmd_quickstart(args: argparse.Namespace) -> None:
    from vlnav.quickstart import run_quickstart

    cfg = _env_config(args.env, args.overrides, args.sim)
    report = run_quickstart(
        cfg,
        Path(args.out),
        episodes=args.episodes,
        workers=args.workers,
        videos=args.videos,
        policy_config=None if args.no_policy else args.policy_config,
        policy_overrides=tuple(args.policy_overrides),
    )
    print(f"report: {report}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlnav", description="Language-driven vision-and-language navigation."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    scenes = sub.add_parser("scenes", help="procedural houses").add_subparsers(
        dest="scenes_command", required=True
    )
    gen = scenes.add_parser("generate", help="generate houses (SceneSpec JSON + GLB)")
    gen.add_argument("--count", type=int, default=10, help="number of houses")
    gen.add_argument("--seed", type=int, default=0, help="random seed")
    gen.add_argument("--out", required=True, help="output folder")
    gen.set_defaults(func=cmd_scenes_generate)

    episodes = sub.add_parser("episodes", help="R2R-CE episodes").add_subparsers(
        dest="episodes_command", required=True
    )
    sample = episodes.add_parser(
        "sample", help="generate the env's houses (if missing) and sample all splits"
    )
    _add_env_args(sample)
    sample.add_argument("--force", action="store_true", help="regenerate existing files")
    sample.set_defaults(func=cmd_episodes_sample)

    ev = sub.add_parser("eval", help="evaluate an agent; resumable, writes records + metrics")
    ev.add_argument("--agent", default="oracle", help="random | forward | oracle")
    ev.add_argument("--policy", default=None, help="a trained policy checkpoint folder")
    _add_env_args(ev)
    ev.add_argument("--split", default="val_unseen", help="train | val_seen | val_unseen")
    ev.add_argument("--episodes", type=int, default=None, help="first N episodes (default all)")
    ev.add_argument("--workers", type=int, default=1, help="worker processes")
    ev.add_argument("--out", default=None, help="output folder (default runs/eval/...)")
    ev.add_argument(
        "--batch",
        type=int,
        default=32,
        help="with --policy: episodes stepped together per worker, decided in one batched "
        "forward (1: one at a time)",
    )
    ev.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="with --policy: the policy's weights and activations (bfloat16 is faster on CPUs "
        "with AVX512-BF16 and on GPUs; decisions can differ slightly from float32)",
    )
    ev.add_argument(
        "--device",
        default="cpu",
        help="with --policy: where the policy runs: cpu, cuda, cuda:N, or auto (a CUDA GPU "
        "if torch sees one); the simulator and captions stay on the CPU",
    )
    ev.add_argument(
        "--stop-bias",
        type=float,
        default=None,
        help="with --policy: subtract this from Stop's logit at each decision (default: the "
        "checkpoint's policy.stop_bias)",
    )
    ev.add_argument(
        "--stop-gate",
        type=float,
        default=None,
        metavar="METRES",
        help="with --policy: Stop only where the instruction's final landmark is within METRES "
        "in some view (or is the room the agent is in); 0 turns the gate off (default: the "
        "checkpoint's policy.stop_gate)",
    )
    ev.add_argument(
        "--restart",
        action="store_true",
        help="when --out holds another run's records (another checkpoint or setting), set them "
        "aside as records.jsonl.old and start over (default: refuse)",
    )
    ev.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="evaluate every N-th episode from the K-th (spread a split over machines; "
        "merge the folders with `vlnav metrics`)",
    )
    ev.set_defaults(func=cmd_eval)

    me = sub.add_parser("metrics", help="merge evaluation folders (e.g. shards) and score them")
    me.add_argument("folders", nargs="+", help="vlnav eval output folders")
    me.add_argument("--out", required=True, help="folder for the merged records and metrics")
    me.set_defaults(func=cmd_metrics)

    tf = sub.add_parser(
        "transfer",
        help="sim-to-sim transfer: text vs features vs both, trained on A, evaluated on A/B/C",
    )
    tf.add_argument("config", help="experiment YAML, e.g. configs/transfer.yaml")
    _add_set_arg(tf, "seeds=[0,1]")
    tf.set_defaults(func=cmd_transfer)

    tr = sub.add_parser("train", help="train the small-LM policy (imitation + DAgger); resumable")
    tr.add_argument("config", help="experiment YAML, e.g. configs/langnav-small.yaml")
    _add_set_arg(tr, "policy.layers=2")
    tr.set_defaults(func=cmd_train)

    qs = sub.add_parser("quickstart", help="the whole pipeline on the embedded default")
    _add_env_args(qs)
    qs.add_argument("--out", default="runs/quickstart", help="report folder")
    qs.add_argument("--episodes", type=int, default=100, help="val_unseen episodes per agent")
    qs.add_argument("--workers", type=int, default=2, help="worker processes")
    qs.add_argument("--videos", type=int, default=3, help="episode videos to render")
    qs.add_argument(
        "--policy-config",
        default="configs/quickstart.yaml",
        help="training config of the policy the quickstart trains",
    )
    qs.add_argument(
        "--policy-set",
        dest="policy_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a policy training value (repeatable)",
    )
    qs.add_argument("--no-policy", action="store_true", help="baselines only, no policy")
    qs.set_defaults(func=cmd_quickstart)

    # further stages add their own subcommands: each module has add_parser(subparsers)
    import importlib

    for module in SUBCOMMAND_MODULES:
        try:
            importlib.import_module(module).add_parser(sub)
        except ModuleNotFoundError as e:
            if e.name is None or not module.startswith(e.name):
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except VlnavError as e:
        print(f"vlnav: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vlnav: interrupted (finished results are kept; rerun to resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
