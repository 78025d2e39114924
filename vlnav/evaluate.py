"""The evaluation harness: roll agents out on episodes, record, resume, aggregate.

Per-episode records are appended to ``records.jsonl`` as episodes finish; a killed run
restarts where it stopped (finished episodes are skipped, a half-written last line is
dropped). ``run.json`` names what produced them (agent, its settings, a digest of the policy
checkpoint's files, split, env config), so a folder is only resumed by the same run: records
of another checkpoint or setting are never mixed in or reported as this run's. Metrics are
computed from the records by ``vlnav.metrics`` only, once, at the end.
``workers > 1`` runs episodes in that many ``spawn``-ed processes, each with its own
simulator (a forked child of a process holding a GL context would hang).
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlnav import VlnavError
from vlnav.agents import make_agent
from vlnav.config import EnvConfig, to_dict
from vlnav.episodes import Episode, load_episodes
from vlnav.metrics import EpisodeRecord, aggregate, compute_metrics, format_table
from vlnav.sampler import resample_path
from vlnav.sim.base import STOP, make_simulator


@dataclass
class EvalResult:
    agent: str
    split: str
    out_dir: Path
    metrics: dict[str, float]
    records: list[dict[str, Any]] = field(default_factory=list)


class Rollout:
    """One episode in progress: the sim reset to its start, the trajectory so far.

    ``run_episode`` drives one with an agent's ``act``; the batched policy runner
    (``vlnav.policy.batched.run_batched``) keeps many and steps them in turn."""

    def __init__(
        self,
        sim: Any,
        episode: Episode,
        agent: Any,
        max_steps: int,
        seed: int = 0,
        success_radius: float = 3.0,
    ) -> None:
        self.sim, self.episode, self.agent = sim, episode, agent
        self.max_steps, self.success_radius = max_steps, success_radius
        self.obs = sim.reset(episode.scene_id, episode.start_position, episode.start_rotation)
        agent.reset(episode, sim, seed)
        self.goal = list(episode.goal_position)
        self.state = sim.agent_state()
        self.positions = [list(self.state.position)]
        self.dists = [sim.geodesic_distance(self.state.position, self.goal)]
        self.actions: list[int] = []
        self.stopped = False
        self.done = max_steps <= 0

    def step(self, action: int) -> None:
        """Record ``action`` and, unless it is Stop, execute it in the simulator."""
        self.actions.append(int(action))
        if action == STOP:
            self.stopped = self.done = True
            return
        self.obs = self.sim.step(action)
        self.state = self.sim.agent_state()
        if self.state.position != self.positions[-1]:
            self.positions.append(list(self.state.position))
            self.dists.append(self.sim.geodesic_distance(self.state.position, self.goal))
        self.done = len(self.actions) >= self.max_steps

    def record(self) -> EpisodeRecord:
        episode, agent = self.episode, self.agent
        return EpisodeRecord(
            episode_id=str(episode.episode_id),
            scene_id=episode.scene_id,
            instruction=episode.instruction_text,
            positions=[[round(v, 4) for v in p] for p in self.positions],
            actions=self.actions,
            # dense ground-truth locations, as VLN-CE's gt files, so nDTW compares like with like
            reference_path=resample_path(episode.reference_path, 0.25),
            goal=self.goal,
            geodesic_start_goal=float(episode.geodesic_distance),
            distance_to_goal=[round(float(d), 4) for d in self.dists],
            stopped=self.stopped,
            success_radius=self.success_radius,
            agent=getattr(agent, "name", type(agent).__name__),
            extra={"trace": agent.trace} if getattr(agent, "trace", None) else {},
        )


def run_episode(
    sim: Any,
    episode: Episode,
    agent: Any,
    max_steps: int,
    seed: int = 0,
    success_radius: float = 3.0,
) -> EpisodeRecord:
    """One rollout: reset, act until STOP or ``max_steps``, and record the trajectory."""
    r = Rollout(sim, episode, agent, max_steps, seed, success_radius)
    while not r.done:
        r.step(agent.act(r.obs, r.state))
    return r.record()


# ---------------------------------------------------------------- worker processes
_WORKER: dict[str, Any] = {}


def _init_worker(
    config: EnvConfig, agent_name: str, agent_kwargs: dict[str, Any], batch: int = 1
) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    agent = make_agent(agent_name, **agent_kwargs)
    _WORKER["sim"] = make_simulator(config.backend, config, sensors=agent.sensors)
    _WORKER["agent"] = agent
    # batched decisions: one agent per slot, all sharing the loaded policy
    _WORKER["agents"] = [agent] + [copy.copy(agent) for _ in range(batch - 1)]
    _WORKER["config"] = config


def _run_wave(tasks: list[tuple[int, Episode]]) -> list[dict[str, Any]]:
    from vlnav.policy.batched import run_batched

    cfg: EnvConfig = _WORKER["config"]
    out = []
    for rec in run_batched(
        _WORKER["sim"],
        tasks,
        _WORKER["agents"],
        cfg.agent.max_steps,
        success_radius=cfg.episodes.success_radius,
    ):
        d = rec.to_dict()
        d["metrics"] = compute_metrics(rec)
        out.append(d)
    return out


def _waves(todo: list[tuple[int, Episode]], size: int) -> list[list[tuple[int, Episode]]]:
    """Consecutive runs of up to ``size`` episodes of one scene (a scene switch reloads)."""
    waves: list[list[tuple[int, Episode]]] = []
    for task in todo:
        if waves and len(waves[-1]) < size and waves[-1][-1][1].scene_id == task[1].scene_id:
            waves[-1].append(task)
        else:
            waves.append([task])
    return waves


def _run_one(task: tuple[int, Episode]) -> dict[str, Any]:
    index, episode = task
    cfg: EnvConfig = _WORKER["config"]
    rec = run_episode(
        _WORKER["sim"],
        episode,
        _WORKER["agent"],
        cfg.agent.max_steps,
        seed=index,
        success_radius=cfg.episodes.success_radius,
    )
    d = rec.to_dict()
    d["metrics"] = compute_metrics(rec)
    return d


RUN_FILE = "run.json"


def checkpoint_digest(path: str | Path) -> str:
    """A digest of a checkpoint's contents (every file of a folder, names and bytes)."""
    root = Path(path)
    if not root.exists():
        raise VlnavError(f"checkpoint not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() if root.is_dir() else b"")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def run_identity(
    config: EnvConfig, agent: str, split: str, agent_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """What produced an evaluation folder's records (``run.json``); not the worker count,
    the batch size, the number of episodes or the policy's device, which do not change a
    record (beyond float noise)."""
    kw: dict[str, Any] = {}
    for k, v in sorted(agent_kwargs.items()):
        if k == "device":
            continue
        if k == "checkpoint":
            kw["checkpoint_digest"] = checkpoint_digest(v)
        elif isinstance(v, (str, int, float, bool, type(None))):
            kw[k] = v
        else:
            kw[k] = repr(v)
    env = json.dumps(to_dict(config), sort_keys=True, default=str).encode()
    return {
        "agent": agent,
        "agent_kwargs": kw,
        "split": split,
        "env": config.name,
        "env_digest": hashlib.sha256(env).hexdigest()[:16],
    }


def _check_run(out: Path, identity: dict[str, Any], restart: bool) -> None:
    """Refuse to resume a folder whose records another run wrote (or, with ``restart``,
    set those records aside as ``records.jsonl.old``); then record this run's identity."""
    rec, run = out / "records.jsonl", out / RUN_FILE
    if rec.is_file() and rec.stat().st_size > 0:
        try:
            prev = json.loads(run.read_text()) if run.is_file() else None
        except json.JSONDecodeError:
            prev = None
        if prev != identity:
            if not restart:
                what = "an unknown run (no readable run.json)"
                if prev is not None:
                    diff = [k for k in identity if prev.get(k) != identity[k]]
                    what = "a run with another " + ", ".join(diff)
                raise VlnavError(
                    f"{out} holds the records of {what}; evaluate into another folder "
                    "(--out) or remove that one"
                )
            old, k = out / "records.jsonl.old", 1
            while old.exists():  # earlier set-aside records are kept too
                k += 1
                old = out / f"records.jsonl.old{k}"
            rec.replace(old)
    run.write_text(json.dumps(identity, indent=2) + "\n")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a previous (possibly killed) run; a truncated last line is dropped."""
    if not path.is_file():
        return []
    good: list[dict[str, Any]] = []
    lines = path.read_text().splitlines()
    for k, line in enumerate(lines):
        try:
            good.append(json.loads(line))
        except json.JSONDecodeError:
            if k == len(lines) - 1:
                break  # the run was killed mid-write: drop the partial line
            raise VlnavError(f"{path}: line {k + 1} is not a JSON record") from None
    # rewrite without the partial line so appends stay valid JSONL
    path.write_text("".join(json.dumps(r) + "\n" for r in good))
    return good


def evaluate(
    config: EnvConfig,
    agent: str,
    split: str = "val_unseen",
    episodes: int | None = None,
    workers: int = 1,
    out_dir: str | Path | None = None,
    agent_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    batch: int = 1,
    shard: tuple[int, int] = (0, 1),
    restart: bool = False,
) -> EvalResult:
    """Evaluate ``agent`` on the first ``episodes`` episodes of ``split``; resumable.

    A folder holding another run's records (another checkpoint or setting: ``run.json``)
    is refused, or with ``restart=True`` its records are set aside (``records.jsonl.old``,
    then ``.old2``, ...) and the run starts over.

    ``batch > 1`` (the ``policy`` agent only) steps that many episodes together in each
    worker and takes their decisions in one batched forward. ``shard=(k, n)`` takes every
    n-th of those episodes from the k-th (one share of a run spread over machines; merge the
    shards' folders with ``merge_records``)."""
    from tqdm import tqdm

    agent_kwargs = agent_kwargs or {}
    if batch > 1 and agent != "policy":
        raise VlnavError(f"--batch {batch} batches policy decisions: it needs --policy")
    make_agent(agent, **agent_kwargs)  # fail fast on an unknown agent
    if not config.scenes.procedural:  # downloaded data (MP3D, R2R-CE): say what to fetch
        from vlnav.sim.habitat_config import check_external_data

        check_external_data(config, split)
    path = config.episodes_path(split)
    if not path.is_file():
        raise VlnavError(f"no episodes for split '{split}' at {path} (run `vlnav episodes sample`)")
    eps = load_episodes(path).episodes
    if episodes is not None:
        eps = eps[:episodes]
    k, n = shard
    if not 0 <= k < n:
        raise VlnavError(f"shard {k}/{n}: expected 0 <= k < n")
    eps = eps[k::n]
    if config.backend == "builtin":  # fail before any work on an unknown scene
        from vlnav.sim.builtin import find_scene

        for scene in sorted({e.scene_id for e in eps}):
            find_scene(config.scenes_dir, scene)
    elif config.backend == "habitat":  # checks scans; writes procedural houses' habitat files once
        from vlnav.sim.habitat_config import resolve_scene

        for scene in sorted({e.scene_id for e in eps}):
            resolve_scene(config, scene)
    out = Path(out_dir or Path("runs") / "eval" / f"{agent}-{config.name}-{split}")
    out.mkdir(parents=True, exist_ok=True)
    _check_run(out, run_identity(config, agent, split, agent_kwargs), restart)
    rec_path = out / "records.jsonl"
    done = read_records(rec_path)
    done_ids = {r["episode_id"] for r in done}
    todo = [(k, e) for k, e in enumerate(eps) if str(e.episode_id) not in done_ids]
    records = list(done)
    bar = tqdm(
        total=len(eps),
        initial=len(eps) - len(todo),
        desc=f"eval {agent}",
        disable=not progress,
        unit="ep",
        mininterval=1.0,
    )
    try:
        with open(rec_path, "a") as fh:

            def write(d: dict[str, Any]) -> None:
                fh.write(json.dumps(d) + "\n")
                fh.flush()
                records.append(d)
                bar.update(1)
                sr = sum(r["metrics"]["SR"] for r in records) / len(records)
                bar.set_postfix(SR=f"{sr:.2f}", refresh=False)

            if batch > 1:  # waves of one scene's episodes, decided together
                jobs, fn = _waves(todo, batch), _run_wave
            else:
                jobs, fn = todo, _run_one
            if workers <= 1 or len(jobs) <= 1:
                _init_worker(config, agent, agent_kwargs, batch)
                try:
                    for job in jobs:
                        got = fn(job)
                        for d in got if batch > 1 else [got]:
                            write(d)
                finally:
                    _WORKER["sim"].close()
            else:
                ctx = mp.get_context("spawn")
                init = (config, agent, agent_kwargs, batch)
                with ctx.Pool(workers, _init_worker, init) as pool:
                    for got in pool.imap_unordered(fn, jobs, chunksize=1):
                        for d in got if batch > 1 else [got]:
                            write(d)
    finally:
        bar.close()
    wanted = {str(e.episode_id) for e in eps}
    records = [r for r in records if r["episode_id"] in wanted]
    records.sort(key=lambda r: int(r["episode_id"]) if r["episode_id"].isdigit() else 0)
    return _finish(records, agent, config.name, split, out)


def _finish(
    records: list[dict[str, Any]], agent: str, env: str, split: str, out: Path
) -> EvalResult:
    metrics = aggregate([r["metrics"] for r in records])
    (out / "metrics.json").write_text(
        json.dumps({"agent": agent, "env": env, "split": split, "metrics": metrics}, indent=2)
        + "\n"
    )
    (out / "metrics.md").write_text(format_table({agent: metrics}) + "\n")
    return EvalResult(agent, split, out, metrics, records)


def merge_records(folders: list[str | Path], out: str | Path) -> EvalResult:
    """Merge the records of several evaluation folders (e.g. the shards of one run, each
    from ``vlnav eval --shard k/n``) into ``out``: its records.jsonl and metrics."""
    out = Path(out)
    records: dict[str, dict[str, Any]] = {}
    agent, env, split = "agent", "env", "split"
    for folder in folders:
        folder = Path(folder)
        path = folder / "records.jsonl"
        if not path.is_file():
            raise VlnavError(f"{folder}: no records.jsonl (is it a vlnav eval folder?)")
        meta = folder / "metrics.json"
        if meta.is_file():
            m = json.loads(meta.read_text())
            agent, env, split = m.get("agent", agent), m.get("env", env), m.get("split", split)
        for r in read_records(path):
            records[r["episode_id"]] = r  # an episode in two shards is counted once
    if not records:
        raise VlnavError("no records to merge")
    rows = sorted(
        records.values(),
        key=lambda r: (0, int(r["episode_id"])) if r["episode_id"].isdigit() else (1, 0),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return _finish(rows, agent, env, split, out)
