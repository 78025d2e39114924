"""Oracle-assisted rollouts of a policy checkpoint: the expert takes some of the decisions,
the policy the rest, to see where the gap to the expert is (README, Results).

    python scripts/policy_assisted.py runs/langnav-small/policy --mode first:2 --episodes 200

Modes: ``none`` (the policy alone), ``first:K`` (the expert takes decisions 1..K),
``force`` (Stop whenever the agent is within the success radius), ``veto`` (a Stop outside
it becomes the policy's best move), ``stop`` (both: an oracle Stop), ``threshold:P`` (no
Stop bias; Stop when the policy's P(stop) >= P, else its best move). Prints the mean
metrics and writes one JSON line of metrics per episode to ``--out``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from vlnav.config import EnvConfig, load_config
from vlnav.episodes import load_episodes
from vlnav.evaluate import run_episode
from vlnav.metrics import compute_metrics
from vlnav.policy.agent import PolicyAgent
from vlnav.policy.prompt import LABELS, STOP_LABEL
from vlnav.sim.base import make_simulator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--mode", default="none")
    ap.add_argument("--env", default="envs/procedural.yaml")
    ap.add_argument("--split", default="val_unseen")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--out", default="runs/policy_assisted.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = load_config(EnvConfig, args.env)
    eps = load_episodes(env.episodes_path(args.split)).episodes[: args.episodes]
    sim = make_simulator("builtin", env)
    agent = PolicyAgent(args.checkpoint, record=True)  # record: the expert judges each one
    mode, _, arg = args.mode.partition(":")
    if mode == "threshold":
        agent.policy.config.stop_bias = 0.0
    radius = agent.success_radius

    def best_move(logp: np.ndarray) -> str:
        lp = np.array(logp)
        lp[len(LABELS)] = -np.inf
        return LABELS[int(np.argmax(lp))]

    def choose(obs, d):
        logp, _ = agent.ctx.scores(d)
        k = int(np.argmax(logp))
        label = STOP_LABEL if k == len(LABELS) else LABELS[k]
        near = d.distance <= radius
        if mode == "first" and len(agent.decisions) <= int(arg or 1):
            label = d.label
        elif mode in ("force", "stop") and near:
            label = STOP_LABEL
        elif mode in ("veto", "stop") and label == STOP_LABEL and not near:
            label = best_move(logp)
        elif mode == "threshold":
            label = STOP_LABEL if np.exp(logp[-1]) >= float(arg) else best_move(logp)
        elif mode not in ("none", "first", "force", "veto", "stop"):
            raise SystemExit(f"unknown --mode {args.mode!r}")
        agent.ctx.commit(label)
        return label

    agent.choose = choose
    rows = []
    with open(args.out, "w") as fh:
        for ep in eps:
            m = compute_metrics(run_episode(sim, ep, agent, env.agent.max_steps))
            rows.append(m)
            fh.write(json.dumps({"episode_id": ep.episode_id, **m}) + "\n")
    sim.close()
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("SR", "SPL", "OSR", "TL")}
    print(f"{args.mode}: {len(rows)} episodes " + " ".join(f"{k} {v:.3f}" for k, v in mean.items()))


if __name__ == "__main__":
    main()
