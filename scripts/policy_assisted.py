"""Oracle-assisted rollouts of a policy checkpoint: the expert takes some of the decisions,
the policy the rest, to see where the gap to the expert is (README, Results).

    python scripts/policy_assisted.py runs/langnav-small/policy --mode first:2 --episodes 200

Modes: ``none`` (the policy alone), ``first:K`` (the expert takes decisions 1..K),
``force`` (Stop whenever the agent is within the success radius), ``veto`` (a Stop outside
it becomes the policy's best move), ``stop`` (both: an oracle Stop), ``threshold:P`` (no
Stop bias; Stop when the policy's P(stop) >= P, else its best move), ``landmark:X`` (Stop
as soon as an object marked as the instruction's final landmark is within X m in some view;
no oracle), ``rule:B:G`` (no oracle: the policy with Stop bias B and the stop gate at G m,
whatever the checkpoint's). Prints the mean metrics and writes one JSON line of metrics per
episode to ``--out``.

``--decisions FILE`` also writes every decision (the agent's geodesic distance to the goal,
its answer, the expert's best and good answers, the metres walked before it; and, scored
without Stop bias or gate, Stop's log-probability less the best move's, ``stop_adv``, and
the smallest stop-gate radius of 0.5, 1, ..., 5 m that would let it stop, ``gate_open``)
and prints
where the successes' path length goes: before and after their first decision within the
success radius, what an oracle Stop there would give, and at which decision they first
leave the expert's good answers (README, Results: "Where SPL is lost").
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

from vlnav.config import EnvConfig, load_config
from vlnav.episodes import load_episodes
from vlnav.evaluate import run_episode
from vlnav.metrics import compute_metrics
from vlnav.policy.agent import PolicyAgent
from vlnav.policy.prompt import LABELS, STOP_LABEL, final_landmark_near, stop_allowed
from vlnav.sim.base import make_simulator

GATES = [0.5 * k for k in range(1, 11)]  # the stop-gate radii recorded per decision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--mode", default="none")
    ap.add_argument("--env", default="envs/procedural.yaml")
    ap.add_argument("--split", default="val_unseen")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--skip", type=int, default=0, help="start after this many episodes")
    ap.add_argument("--out", default="runs/policy_assisted.jsonl")
    ap.add_argument("--decisions", default=None, help="also write every decision here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = load_config(EnvConfig, args.env)
    eps = load_episodes(env.episodes_path(args.split)).episodes[
        args.skip : args.skip + args.episodes
    ]
    sim = make_simulator("builtin", env)
    agent = PolicyAgent(args.checkpoint, record=True)  # record: the expert judges each one
    mode, _, arg = args.mode.partition(":")
    if mode == "threshold":
        agent.policy.config.stop_bias = 0.0
    # decisions are scored without Stop bias or gate, which are then applied here (the same
    # argmax), so that each record also says what other biases and gates would have done
    bias, gate = agent.policy.config.stop_bias, agent.policy.config.stop_gate
    if mode == "rule":
        b, _, g = arg.partition(":")
        bias, gate = float(b), float(g or gate)
    agent.policy.config.stop_bias, agent.policy.config.stop_gate = 0.0, 0.0
    extra: list[dict] = []  # per decision of the current episode: stop_adv, gate_open
    radius = agent.success_radius

    def best_move(logp: np.ndarray) -> str:
        lp = np.array(logp)
        lp[len(LABELS)] = -np.inf
        return LABELS[int(np.argmax(lp))]

    def choose(obs, d):
        logp, _ = agent.ctx.scores(d)
        marks = agent.ctx.marks
        opens = [g for g in GATES if stop_allowed(obs, marks, g)]
        moves = np.max(logp[: len(LABELS)]) if np.isfinite(logp[: len(LABELS)]).any() else None
        adv = None if moves is None else float(logp[-1] - moves)
        extra.append({"stop_adv": adv, "gate_open": opens[0] if opens else None})
        logp = np.array(logp)
        if moves is not None:  # the checkpoint's (or the rule's) bias and gate
            logp[-1] -= bias
            if gate > 0 and not stop_allowed(obs, marks, gate):
                logp[-1] = -np.inf
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
        elif mode == "landmark" and final_landmark_near(obs, agent.ctx.marks, float(arg)):
            label = STOP_LABEL
        elif mode not in ("none", "first", "force", "veto", "stop", "landmark", "rule"):
            raise SystemExit(f"unknown --mode {args.mode!r}")
        agent.ctx.commit(label)
        return label

    agent.choose = choose
    rows, walks = [], []
    with open(args.out, "w") as fh, open(args.decisions or os.devnull, "w") as dec_fh:
        for ep in eps:
            extra.clear()
            rec = run_episode(sim, ep, agent, env.agent.max_steps)
            m = compute_metrics(rec)
            rows.append(m)
            fh.write(json.dumps({"episode_id": ep.episode_id, **m}) + "\n")
            if args.decisions:
                walk = episode_walk(rec, agent, m)
                for dec, more in zip(walk["decisions"], extra):
                    dec.update(more)
                walks.append(walk)
                dec_fh.write(json.dumps({"episode_id": ep.episode_id, **walk}) + "\n")
    sim.close()
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("SR", "SPL", "OSR", "TL")}
    print(f"{args.mode}: {len(rows)} episodes " + " ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    if walks:
        summarise(walks, radius)
        replay(walks, radius, bias, gate)


def episode_walk(rec, agent, m: dict) -> dict:
    """One episode's decisions: distance to the goal, answer, the expert's, metres walked.

    The record keeps a position only when the agent moved, so each decision is found in it
    by its own position (in order), not by its action count."""
    pos = np.asarray(rec.positions, dtype=float)
    walked = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pos, axis=0), axis=1))])
    decisions, j = [], 0
    for d, t in zip(agent.decisions, agent.trace):
        at = np.abs(pos[j:] - np.asarray(d.obs.position)).max(axis=1) < 1e-3
        j += int(np.argmax(at))  # 0 (stay) when not found
        decisions.append(
            {
                "distance": d.distance,
                "label": t["label"],
                "best": d.label,
                "good": d.good,
                "walked": round(float(walked[j]), 3),
            }
        )
    return {"geodesic": rec.geodesic_start_goal, "SR": m["SR"], "SPL": m["SPL"],
            "TL": m["TL"], "decisions": decisions}  # fmt: skip


def summarise(walks: list[dict], radius: float) -> None:
    """Where the successes' path length goes (printed)."""
    succ = [w for w in walks if w["SR"] > 0]
    before, after = [], []
    for w in succ:
        k = next((i for i, d in enumerate(w["decisions"]) if d["distance"] <= radius), None)
        if k is not None:
            before.append(w["decisions"][k]["walked"])
            after.append(w["TL"] - before[-1])
    print(
        f"{len(succ)} successes: shortest path {np.mean([w['geodesic'] for w in succ]):.2f} m, "
        f"walked {np.mean(before):.2f} m before the first decision within {radius:g} m of "
        f"the goal and {np.mean(after):.2f} m after it (median {np.median(after):.2f})"
    )
    for within in (radius, radius - 0.5):
        spl = []
        for w in walks:
            k = next((i for i, d in enumerate(w["decisions"]) if d["distance"] <= within), None)
            if k is None:  # never there at a decision: as it was (a success between decisions)
                spl.append(w["SPL"])
            else:
                spl.append(w["geodesic"] / max(w["decisions"][k]["walked"], w["geodesic"]))
        print(f"an oracle Stop at the first decision within {within:g} m: SPL {np.mean(spl):.3f}")
    first = [w["decisions"][0]["label"] in w["decisions"][0]["good"] for w in walks]
    print(f"first decisions among the expert's good answers: {np.mean(first):.3f}")
    groups: dict[str, list[float]] = {}
    for w in succ:
        ds = w["decisions"]
        k = next((i for i, d in enumerate(ds) if d["label"] not in d["good"]), None)
        key = "never" if k is None else f"decision {k + 1}" if k < 3 else "decision 4+"
        groups.setdefault(key, []).append(w["SPL"])
    for key in sorted(groups):
        g = groups[key]
        print(
            f"successes first leaving the good answers at {key}: {len(g)}, mean SPL {np.mean(g):.3f}"
        )


def replay(walks: list[dict], radius: float, bias: float, gate: float) -> None:
    """What a lower Stop bias or a wider stop gate would have given (printed): each episode
    ends at its first decision where the rule lets Stop win. Exact for rules that stop no
    later than the rollout's (bias <= its bias, gate >= its gate)."""
    biases = sorted({bias, *[b for b in (1.0, 0.0, -1.0, -2.0, -3.0) if b <= bias]}, reverse=True)
    gates = sorted({gate, *[g for g in (2.0, 2.5, 3.0, 4.0, 5.0) if g >= gate]})
    print("replayed (SR / SPL): rows Stop bias, columns stop gate (m)")
    print("bias  " + "  ".join(f"{g:>11g}" for g in gates))
    for b in biases:
        row = []
        for g in gates:
            sr, spl = [], []
            for w in walks:
                end = None
                for d in w["decisions"][:-1]:
                    adv, op = d.get("stop_adv"), d.get("gate_open")
                    if adv is not None and op is not None and op <= g and adv - b > 0:
                        end = d
                        break
                if end is None:
                    sr.append(w["SR"])
                    spl.append(w["SPL"])
                else:
                    ok = end["distance"] <= radius
                    sr.append(float(ok))
                    spl.append(ok * w["geodesic"] / max(end["walked"], w["geodesic"]))
            row.append(f"{np.mean(sr):.3f}/{np.mean(spl):.3f}")
        print(f"{b:>4g}  " + "  ".join(row))


if __name__ == "__main__":
    main()
