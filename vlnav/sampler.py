"""R2R-like episode sampling on the navigation grid, and data preparation for an env.

An episode starts and ends in different rooms, its geodesic distance lies in
[min_geodesic, max_geodesic], and its reference path is the shortest path resampled to
R2R-like waypoints (at most ``waypoint_spacing`` apart). Splits follow R2R: ``train`` and
``val_seen`` come from the train houses (different paths), ``val_unseen`` from houses never
used in training.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from vlnav import VlnavError
from vlnav.config import EnvConfig
from vlnav.episodes import (
    Episode,
    EpisodeSet,
    build_vocab,
    save_episodes,
    tokenize,
    yaw_to_quaternion,
)
from vlnav.scenes.spec import SceneSpec
from vlnav.sim.navgrid import NavGrid, path_length

SPLITS = ("train", "val_seen", "val_unseen")


def resample_path(points: list[list[float]], spacing: float) -> list[list[float]]:
    """Points along a polyline, at most ``spacing`` apart, keeping every corner."""
    out = [list(points[0])]
    for a, b in zip(points[:-1], points[1:]):
        n = max(1, int(math.ceil(math.dist(a, b) / spacing)))
        for k in range(1, n + 1):
            t = k / n
            out.append([a[i] + t * (b[i] - a[i]) for i in range(3)])
    return [[round(v, 4) + 0.0 for v in p] for p in out]


def describe_route(spec: SceneSpec, path: list[list[float]]) -> str:
    """A plain route description (rooms passed, a landmark at the goal).

    A placeholder for the speakers of ``vlnav.instruct``: enough for a policy to know where
    the goal is.
    """
    rooms: list[str] = []
    for p in resample_path(path, 0.5):
        r = spec.room_at(p[0], p[2])
        if r is not None and (not rooms or rooms[-1] != r.type):
            rooms.append(r.type)
    goal = path[-1]
    goal_room = spec.room_at(goal[0], goal[2])
    near = [
        o
        for o in spec.objects
        if goal_room is not None and o.room == goal_room.id and o.bbox_min[1] < 1.0
    ]
    near.sort(key=lambda o: math.dist((o.position[0], o.position[2]), (goal[0], goal[2])))
    parts = [f"Leave the {rooms[0]}"] if rooms else ["Start walking"]
    for r in rooms[1:-1]:
        parts.append(f"go through the {r}")
    end = f"stop in the {rooms[-1]}" if len(rooms) > 1 else "stop"
    if near:
        end += f" next to the {near[0].colour} {near[0].category}"
    parts.append(end)
    return ", ".join(parts) + "."


def sample_episodes(
    spec: SceneSpec,
    grid: NavGrid,
    count: int,
    rng: np.random.Generator,
    min_geodesic: float = 5.0,
    max_geodesic: float = 20.0,
    success_radius: float = 3.0,
    scene_path: str | None = None,
    waypoint_spacing: float = 2.0,
    max_tries: int = 200,
) -> list[Episode]:
    """``count`` R2R-like episodes in one house (fewer if the house cannot hold them)."""
    episodes: list[Episode] = []
    ii, jj = grid.free_cells()
    if len(ii) == 0:
        raise VlnavError(f"scene {spec.scene_id} has no navigable area")
    scene_id = scene_path or f"{spec.scene_id}/{spec.scene_id}.glb"
    tries = 0
    while len(episodes) < count and tries < count * max_tries:
        tries += 1
        k = int(rng.integers(len(ii)))
        start = grid.to_world(ii[k], jj[k])
        start_room = spec.room_at(start[0], start[2])
        if start_room is None:
            continue
        field = grid.distance_field(start)
        d = field[ii, jj]
        ok = (d >= min_geodesic) & (d <= max_geodesic * 1.03)
        cand = np.nonzero(ok)[0]
        if len(cand) == 0:
            continue
        for _ in range(8):
            g = int(cand[rng.integers(len(cand))])
            goal = grid.to_world(ii[g], jj[g])
            goal_room = spec.room_at(goal[0], goal[2])
            if goal_room is None or goal_room.id == start_room.id:
                continue
            path = grid.shortest_path(start, goal)
            geo = path_length(path)
            if not (min_geodesic <= geo <= max_geodesic):
                continue
            yaw = float(rng.uniform(-math.pi, math.pi))
            eid = len(episodes)
            episodes.append(
                Episode(
                    episode_id=eid,
                    trajectory_id=eid,
                    scene_id=scene_id,
                    start_position=[round(v, 4) + 0.0 for v in start],
                    start_rotation=[round(v, 6) + 0.0 for v in yaw_to_quaternion(yaw)],
                    goals=[
                        {"position": [round(v, 4) + 0.0 for v in goal], "radius": success_radius}
                    ],
                    reference_path=resample_path(path, waypoint_spacing)
                    if waypoint_spacing
                    else path,
                    instruction_text=describe_route(spec, path),
                    instruction_tokens=[],
                    info={"geodesic_distance": round(geo, 4)},
                    extra={},
                )
            )
            break
    return episodes


def scene_ids(config: EnvConfig, split: str) -> list[str]:
    n_train, n_unseen = config.scenes.train, config.scenes.val_unseen
    ids = [f"house_{i:04d}" for i in range(n_train + n_unseen)]
    return ids[n_train:] if split == "val_unseen" else ids[:n_train]


def prepare_data(config: EnvConfig, force: bool = False, progress: bool = True) -> Path:
    """Generate the env's houses and sample its episode splits, skipping what exists.

    Deterministic: the same config gives byte-identical files. Files are written atomically,
    so an interrupted run never leaves a truncated file behind.
    """
    from tqdm import tqdm

    from vlnav.scenes.generator import GeneratorConfig, generate_houses

    if not config.scenes.procedural:
        raise VlnavError(
            f"env '{config.name}' uses external scenes (scenes.procedural: false): "
            f"nothing to generate; its episodes are read from {config.episodes_path('<split>')}"
        )
    from vlnav.config import from_dict

    _check_fingerprint(config, force)
    gen_cfg = from_dict(GeneratorConfig, config.scenes.generator, "scenes.generator")
    gen_cfg.agent_radius = config.agent.radius
    total = config.scenes.train + config.scenes.val_unseen
    scenes_dir = config.scenes_dir
    missing = [s for s in scene_ids_all(config) if not (scenes_dir / s / f"{s}.json").is_file()]
    if missing or force:
        generate_houses(total, config.scenes.seed, scenes_dir, gen_cfg, progress=progress)
    per = {
        "train": config.episodes.train_per_scene,
        "val_seen": config.episodes.val_seen_per_scene,
        "val_unseen": config.episodes.val_unseen_per_scene,
    }
    for si, split in enumerate(SPLITS):
        path = config.episodes_path(split)
        if path.is_file() and not force:
            continue
        eps: list[Episode] = []
        ids = scene_ids(config, split)
        bar = tqdm(ids, desc=f"sampling {split}", disable=not progress, leave=False)
        for k, sid in enumerate(bar):
            spec = SceneSpec.load(scenes_dir / sid / f"{sid}.json")
            grid = NavGrid.from_spec(spec, config.grid_cell, config.agent.radius)
            rng = np.random.default_rng([config.episodes.seed, si, k])
            e = config.episodes
            got = sample_episodes(
                spec, grid, per[split], rng, e.min_geodesic, e.max_geodesic, e.success_radius
            )
            for ep in got:
                ep.episode_id = ep.trajectory_id = len(eps)
                eps.append(ep)
        vocab = build_vocab([ep.instruction_text for ep in eps])
        for ep in eps:
            ep.instruction_tokens = tokenize(ep.instruction_text, vocab)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("tmp-" + path.name)
        save_episodes(tmp, EpisodeSet(episodes=eps, vocab=vocab, extra={}))
        if config.episodes.speaker != "route":
            tmp = _speaker_instructions(config, tmp, split)
        tmp.replace(path)
    _fingerprint_path(config).write_text(json.dumps(_fingerprint(config), indent=2) + "\n")
    return Path(config.data_dir)


def _fingerprint(config: EnvConfig) -> dict:
    """What the generated files depend on: the scenes and episodes settings and the grid."""
    import dataclasses

    return {
        "scenes": dataclasses.asdict(config.scenes),
        "episodes": dataclasses.asdict(config.episodes),
        "grid_cell": config.grid_cell,
        "agent_radius": config.agent.radius,
    }


def _fingerprint_path(config: EnvConfig) -> Path:
    return Path(config.data_dir) / "dataset.json"


def _check_fingerprint(config: EnvConfig, force: bool) -> None:
    """Refuse to mix files made with other settings into this data folder."""
    path = _fingerprint_path(config)
    if force or not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise VlnavError(
            f"{path} is corrupt: delete it and run `vlnav episodes sample --force`"
        ) from None
    new = json.loads(json.dumps(_fingerprint(config)))
    if old != new:
        flat_old, flat_new = _flatten(old), _flatten(new)
        diff = sorted(
            k for k in flat_old.keys() | flat_new.keys() if flat_old.get(k) != flat_new.get(k)
        )
        raise VlnavError(
            f"{config.data_dir} was generated with other settings ({', '.join(diff)} differ): "
            "use another data_dir, or regenerate with `vlnav episodes sample --force`"
        )


def _flatten(d: dict, prefix: str = "") -> dict:
    """{"scenes": {"train": 60}} -> {"scenes.train": 60}"""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _speaker_instructions(config: EnvConfig, path: Path, split: str) -> Path:
    """Rewrite a sampled split's instructions with the env's speaker (template or an LLM).

    An LLM speaker's replies are cached in ``<split>/tmp-instruct-<split>/cache``, so an
    interrupted preparation resumes without asking again."""
    import shutil

    from vlnav.instruct.config import InstructConfig
    from vlnav.instruct.pipeline import run_instruct

    work = path.parent / f"tmp-instruct-{split}"
    res = run_instruct(
        InstructConfig(speaker=config.episodes.speaker, seed=config.episodes.seed),
        config,
        path,
        work,
        progress=False,
        trajectories=False,
    )
    out = path.with_name(f"tmp-template-{path.name}")
    shutil.move(str(res.files["episodes"]), out)
    path.unlink()
    shutil.rmtree(work, ignore_errors=True)
    return out


def scene_ids_all(config: EnvConfig) -> list[str]:
    return [f"house_{i:04d}" for i in range(config.scenes.train + config.scenes.val_unseen)]
