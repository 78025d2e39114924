"""``vlnav transfer configs/transfer.yaml``: the sim-to-sim transfer experiment.

LangNav's question, on vlnav's rendering domains: does language as the perceptual
representation transfer across a visual domain gap better than visual features, especially
with little in-domain data? The command

1. prepares the training env's houses and episodes (domain A by default);
2. trains the pixel-based ``learned`` captioner on domain A frames (skipped when its
   checkpoint exists), whose encoder also gives the visual features;
3. collects the expert's decisions once on the largest number of training trajectories,
   with both the learned captions and the learned features of every view;
4. trains one policy per cell (perceptual input x number of trajectories x seed):
   ``text`` (learned captions, no fusion), ``features`` (empty captions, the features added
   to each candidate's tokens), ``both`` (captions and features);
5. evaluates every policy on the ``val_unseen`` episodes of every domain (A, B, C), with
   batched decisions;
6. writes ``results.json`` (per cell and domain: SR, SPL, ...), ``results.md`` (mean and
   standard deviation over seeds, and the transfer gap A - B, A - C) and ``transfer.png``.

Every stage is resumable: a killed run restarts where it stopped (finished policies and
evaluation records are kept).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlnav import VlnavError
from vlnav.config import (
    ConfigError,
    EnvConfig,
    check_range,
    from_dict,
    load_config,
)

INPUTS = ("text", "features", "both")


@dataclass
class TransferCaptioner:
    checkpoint: str = "runs/transfer/captioner"  # trained on the training env if missing
    minutes: float = 8.0
    frames: int = 12000
    eval_frames: int = 600
    max_steps: int = 0  # 0: until the time budget is spent

    def __post_init__(self) -> None:
        check_range("minutes", self.minutes, 0.1, 10_000)
        check_range("frames", self.frames, 100, 10_000_000)


@dataclass
class TransferConfig:
    name: str = "transfer"
    out: str = "runs/transfer"
    train_env: str = "envs/procedural.yaml"
    env_overrides: list[str] = field(default_factory=list)  # applied to every env
    domains: dict[str, str] = field(
        default_factory=lambda: {
            "A": "envs/procedural.yaml",
            "B": "envs/procedural-textured.yaml",
            "C": "envs/procedural-noisy.yaml",
        }
    )
    inputs: list[str] = field(default_factory=lambda: list(INPUTS))
    trajectories: list[int] = field(default_factory=lambda: [50])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    eval_episodes: int = 40
    workers: int = 2
    batch: int = 16
    captioner: TransferCaptioner = field(default_factory=TransferCaptioner)
    # the TrainConfig of every cell, as a nested mapping (policy, optim, dagger, ...)
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for k in self.inputs:
            if k not in INPUTS:
                raise ConfigError(f"inputs: {k!r} is not one of {list(INPUTS)}")
        if not self.inputs or not self.trajectories or not self.seeds or not self.domains:
            raise ConfigError("inputs, trajectories, seeds and domains must not be empty")
        for n in self.trajectories:
            check_range("trajectories", n, 1, 1_000_000)
        check_range("eval_episodes", self.eval_episodes, 1, 1_000_000)
        check_range("workers", self.workers, 1, 256)
        check_range("batch", self.batch, 1, 1024)


def load_transfer_config(path: str | Path | None, overrides: list[str] = ()) -> TransferConfig:
    return load_config(TransferConfig, path, list(overrides))


# ------------------------------------------------------------------------------- cells
def cell_name(inp: str, n: int, seed: int) -> str:
    return f"{inp}-n{n}-s{seed}"


def cell_train_config(cfg: TransferConfig, inp: str, n: int, seed: int, captioner: str) -> Any:
    """The TrainConfig of one cell: its input's captioner / features / fusion."""
    from vlnav.train import TrainConfig

    data = json.loads(json.dumps(cfg.train))  # a deep copy
    data.update(
        name=cell_name(inp, n, seed),
        env=cfg.train_env,
        env_overrides=list(cfg.env_overrides),
        out=str(Path(cfg.out) / "cells" / cell_name(inp, n, seed)),
        seed=seed,
    )
    data.setdefault("data", {})["max_episodes"] = n
    data.setdefault("policy", {})
    data["captioner"] = {"name": "none" if inp == "features" else captioner, "kwargs": {}}
    if inp == "text":
        data["policy"]["fusion"] = "none"
        data.pop("features", None)
    else:
        data["policy"].setdefault("fusion", "add")
        if data["policy"]["fusion"] == "none":
            data["policy"]["fusion"] = "add"
        data["features"] = captioner
    try:
        return from_dict(TrainConfig, data)
    except ConfigError as e:
        raise ConfigError(f"train: {e}") from None


def _derive(pool: list[dict[str, Any]], inp: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` pooled expert episodes as input ``inp`` sees them."""
    out = []
    for item in pool[:n]:
        item = json.loads(json.dumps(item))
        for d in item["decisions"]:
            if inp == "text":
                d["features"] = None
            elif inp == "features":
                for c in d["obs"]["candidates"]:
                    c["caption"] = {"text": "", "room": None, "doorway": False, "mentions": []}
        out.append(item)
    return out


# ------------------------------------------------------------------------------- run
def run_transfer(cfg: TransferConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the whole experiment; returns the results written to ``results.json``."""
    from vlnav.sampler import prepare_data
    from vlnav.train import Trainer, read_jsonl

    t0 = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    envs = {d: load_config(EnvConfig, p, cfg.env_overrides) for d, p in cfg.domains.items()}
    train_env = load_config(EnvConfig, cfg.train_env, cfg.env_overrides)
    for env in [train_env, *envs.values()]:
        if env.scenes.procedural:
            prepare_data(env, progress=progress)
    timings: dict[str, float] = {}

    # 1. the pixel-based captioner (its encoder gives the features)
    ckpt = Path(cfg.captioner.checkpoint)
    captioner = f"learned:{ckpt}"
    if not (ckpt / "eval.json").is_file():  # written when training ends; a killed run resumes
        from vlnav.perception.learned import TrainCaptionerConfig, train_captioner

        t = time.time()
        print(
            f"[transfer] training the learned captioner ({cfg.captioner.minutes:g} min) -> {ckpt}"
        )
        c = cfg.captioner
        tc = TrainCaptionerConfig(
            minutes=c.minutes,
            frames=c.frames,
            eval_frames=c.eval_frames,
            max_steps=c.max_steps,
            threads=0,
        )
        train_captioner(train_env, tc, ckpt, progress=progress)
        timings["captioner_s"] = time.time() - t
    from vlnav.perception.learned import load_checkpoint

    load_checkpoint(ckpt)  # a missing or corrupt checkpoint fails here, in one line

    # 2. the expert's decisions, once, with both captions and features
    t = time.time()
    n_max = max(cfg.trajectories)
    pool_cfg = cell_train_config(cfg, "both", n_max, cfg.seeds[0], captioner)
    pool_cfg.out = str(out / "expert")
    pool = Trainer(pool_cfg, progress=progress, env=train_env)
    pool_file = out / "expert" / "expert.jsonl"
    pool.collect(pool_file, pool.episodes(), desc="expert data (captions + features)")
    items = read_jsonl(pool_file)
    timings["expert_s"] = time.time() - t

    # 3. one policy per cell, 4. evaluated on every domain
    results: list[dict[str, Any]] = []
    for n in cfg.trajectories:
        for inp in cfg.inputs:
            for seed in cfg.seeds:
                tcfg = cell_train_config(cfg, inp, n, seed, captioner)
                ckpt_dir = Path(tcfg.out) / "policy"
                t = time.time()
                if not (ckpt_dir / "policy.json").is_file():
                    data = Path(tcfg.out) / "data"
                    data.mkdir(parents=True, exist_ok=True)
                    if not (data / "expert.jsonl").is_file():
                        tmp = data / "tmp-expert.jsonl"
                        tmp.write_text(
                            "".join(json.dumps(r) + "\n" for r in _derive(items, inp, n))
                        )
                        tmp.replace(data / "expert.jsonl")
                    Trainer(tcfg, progress=progress, env=train_env).run()
                train_s = time.time() - t
                for dom, env in envs.items():
                    t = time.time()
                    rec = _evaluate_cell(
                        cfg, env, ckpt_dir, Path(tcfg.out) / f"eval-{dom}", progress
                    )
                    results.append(
                        {
                            "input": inp,
                            "trajectories": n,
                            "seed": seed,
                            "domain": dom,
                            "metrics": rec,
                            "train_s": round(train_s, 1),
                            "eval_s": round(time.time() - t, 1),
                        }
                    )
                    m = rec
                    print(
                        f"[transfer] {cell_name(inp, n, seed)} on {dom}: "
                        f"SR {m['SR']:.3f} SPL {m['SPL']:.3f}"
                    )
    # chance level: the random agent on the training domain's episodes (it renders nothing)
    from vlnav.evaluate import evaluate

    rnd = evaluate(
        train_env,
        "random",
        "val_unseen",
        cfg.eval_episodes,
        1,
        out / "random",
        progress=False,
        restart=True,
    ).metrics
    summary = summarise(results, list(cfg.domains))
    res = {
        "config": dataclasses.asdict(cfg),
        "cells": results,
        "summary": summary,
        "random": {"SR": rnd["SR"], "SPL": rnd["SPL"]},
        "timings": {**timings, "total_s": round(time.time() - t0, 1)},
    }
    prev = out / "results.json"
    if prev.is_file():  # a resumed run: keep the earlier runs' wall times
        try:
            earlier = json.loads(prev.read_text()).get("timings", {})
        except json.JSONDecodeError:
            earlier = {}
        runs = earlier.get("runs_s") or [earlier.get("total_s")]
        res["timings"]["runs_s"] = [r for r in runs if r] + [res["timings"]["total_s"]]
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    md = format_summary(summary, list(cfg.domains))
    md += f"\n\nrandom agent (chance level): SR {rnd['SR']:.3f}, SPL {rnd['SPL']:.3f}"
    (out / "results.md").write_text(md + "\n")
    plot_transfer(summary, list(cfg.domains), out / "transfer.png", chance=res["random"])
    print(format_summary(summary, list(cfg.domains)))
    print(
        f"[transfer] done in {time.time() - t0:.0f} s: {out / 'results.md'}, {out / 'transfer.png'}"
    )
    return res


def _evaluate_cell(
    cfg: TransferConfig, env: EnvConfig, ckpt: Path, out: Path, progress: bool
) -> dict[str, float]:
    from vlnav.evaluate import evaluate

    res = evaluate(
        env,
        "policy",
        "val_unseen",
        cfg.eval_episodes,
        cfg.workers,
        out,
        agent_kwargs={"checkpoint": str(ckpt)},
        progress=progress,
        batch=cfg.batch,
        restart=True,  # a retrained cell's checkpoint is evaluated afresh
    )
    return res.metrics


# ------------------------------------------------------------------------------- report
def summarise(cells: list[dict[str, Any]], domains: list[str]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (input, trajectories, domain), plus the
    transfer gap (the first domain's mean minus each other domain's)."""
    groups: dict[tuple[str, int], dict[str, dict[str, list[float]]]] = {}
    for c in cells:
        g = groups.setdefault((c["input"], c["trajectories"]), {})
        d = g.setdefault(c["domain"], {"SR": [], "SPL": []})
        d["SR"].append(float(c["metrics"]["SR"]))
        d["SPL"].append(float(c["metrics"]["SPL"]))
    rows = []
    for (inp, n), g in groups.items():
        row: dict[str, Any] = {"input": inp, "trajectories": n, "domains": {}}
        for dom in domains:
            if dom not in g:
                continue
            v = g[dom]
            row["domains"][dom] = {
                "seeds": len(v["SR"]),
                "SR": float(np.mean(v["SR"])),
                "SR_std": float(np.std(v["SR"])),
                "SPL": float(np.mean(v["SPL"])),
                "SPL_std": float(np.std(v["SPL"])),
                "SR_all": v["SR"],
            }
        base = row["domains"].get(domains[0])
        row["gap"] = {
            dom: base["SR"] - row["domains"][dom]["SR"]
            for dom in domains[1:]
            if base and dom in row["domains"]
        }
        rows.append(row)
    return rows


def format_summary(rows: list[dict[str, Any]], domains: list[str]) -> str:
    head = ["input", "trajectories"]
    head += [f"{m} {d}" for d in domains for m in ("SR", "SPL")]
    head += [f"SR gap {domains[0]}-{d}" for d in domains[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cols = [r["input"], str(r["trajectories"])]
        for d in domains:
            v = r["domains"].get(d)
            cols += (
                [f"{v['SR']:.3f} ± {v['SR_std']:.3f}", f"{v['SPL']:.3f} ± {v['SPL_std']:.3f}"]
                if v
                else ["", ""]
            )
        cols += [f"{r['gap'][d]:+.3f}" if d in r["gap"] else "" for d in domains[1:]]
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def plot_transfer(
    rows: list[dict[str, Any]],
    domains: list[str],
    path: Path,
    chance: dict[str, float] | None = None,
) -> Path:
    """SR and SPL per domain for each input (bars: mean over seeds; dots: each seed; dashed:
    the random agent's level, when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted({r["trajectories"] for r in rows})
    fig, axes = plt.subplots(len(ns), 2, figsize=(10, 3.6 * len(ns)), squeeze=False)
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b2"]
    for i, n in enumerate(ns):
        sub = [r for r in rows if r["trajectories"] == n]
        for j, metric in enumerate(("SR", "SPL")):
            ax = axes[i][j]
            width = 0.8 / max(len(domains), 1)
            for k, dom in enumerate(domains):
                xs, ms, sd = [], [], []
                for x, r in enumerate(sub):
                    v = r["domains"].get(dom)
                    if v is None:
                        continue
                    xs.append(x + (k - (len(domains) - 1) / 2) * width)
                    ms.append(v[metric])
                    sd.append(v[f"{metric}_std"])
                    if metric == "SR":
                        ax.scatter(
                            [xs[-1]] * len(v["SR_all"]), v["SR_all"], s=9, color="k", zorder=3
                        )
                ax.bar(xs, ms, width, yerr=sd, capsize=3, label=dom, color=colours[k % 5])
            if chance is not None:
                ax.axhline(chance[metric], color="grey", ls="--", lw=1, label="random agent")
            ax.set_xticks(range(len(sub)))
            ax.set_xticklabels([r["input"] for r in sub])
            ax.set_ylim(0, 1)
            ax.set_ylabel(metric)
            ax.set_title(f"{metric}, {n} training trajectories (domain {domains[0]})")
            ax.grid(axis="y", alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(title="evaluated on", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(path: str | None, overrides: list[str]) -> None:
    cfg = load_transfer_config(path, overrides)
    if not Path(cfg.train_env).is_file():
        raise VlnavError(f"train_env {cfg.train_env} does not exist")
    run_transfer(cfg)
