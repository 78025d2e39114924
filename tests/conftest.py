"""Fixture factories: a hand-built two-room house, saved as a scenes folder, and its episodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vlnav.config import EnvConfig, SensorConfig
from vlnav.scenes.spec import Door, Room, SceneObject, SceneSpec, Wall


def make_two_room_spec(scene_id: str = "tiny_0000") -> SceneSpec:
    """Two 4 x 4 m rooms side by side (x in [0, 4] and [4, 8], z in [0, 4]), a 1 m door at
    (4, 2) in the shared wall, a sofa in the first room and a fridge in the second."""
    t, h = 0.1, 2.6
    rooms = [
        Room(0, "living room", [[0, 0], [4, 0], [4, 4], [0, 4]], floor_id=1, ceiling_id=2),
        Room(1, "kitchen", [[4, 0], [8, 0], [8, 4], [4, 4]], floor_id=3, ceiling_id=4),
    ]
    walls = [
        Wall(10, [0, 0], [8, 0], t, h),
        Wall(11, [0, 4], [8, 4], t, h),
        Wall(12, [0, 0], [0, 4], t, h),
        Wall(13, [8, 0], [8, 4], t, h),
        Wall(14, [4, 0], [4, 1.5], t, h),  # shared wall, door gap z in [1.5, 2.5]
        Wall(15, [4, 2.5], [4, 4], t, h),
    ]
    doors = [Door(0, 20, [0, 1], [4.0, 2.0], 1.0, 2.1, "z")]
    objects = [
        SceneObject(30, "sofa", "red", [200, 40, 40], 0, [1.0, 0.0, 3.4], 180.0, [1.8, 0.8, 0.8]),
        SceneObject(
            31, "fridge", "white", [240, 240, 240], 1, [7.6, 0.0, 0.5], 270.0, [0.7, 1.8, 0.6]
        ),
    ]
    return SceneSpec(scene_id, 0, rooms, walls, doors, objects, wall_height=h, wall_thickness=t)


@pytest.fixture
def two_room_spec() -> SceneSpec:
    return make_two_room_spec()


@pytest.fixture
def tiny_env(tmp_path: Path) -> EnvConfig:
    """An EnvConfig whose scenes folder holds the two-room house (64 x 64 sensors)."""
    spec = make_two_room_spec()
    cfg = EnvConfig(data_dir=str(tmp_path / "data"), sensor=SensorConfig(width=64, height=64))
    folder = cfg.scenes_dir / spec.scene_id
    folder.mkdir(parents=True)
    spec.save(folder / f"{spec.scene_id}.json")
    return cfg


@pytest.fixture
def tiny_episodes(tiny_env: EnvConfig):
    """Five episodes from the living room to the kitchen, saved as the val_unseen split."""
    from vlnav.episodes import EpisodeSet, build_vocab, save_episodes, tokenize
    from vlnav.sampler import sample_episodes
    from vlnav.sim.navgrid import NavGrid

    spec = make_two_room_spec()
    grid = NavGrid.from_spec(spec)
    eps = sample_episodes(
        spec,
        grid,
        5,
        np.random.default_rng(0),
        min_geodesic=3.0,
        max_geodesic=9.0,
        scene_path=f"{spec.scene_id}/{spec.scene_id}.glb",
    )
    vocab = build_vocab([e.instruction_text for e in eps])
    for e in eps:
        e.instruction_tokens = tokenize(e.instruction_text, vocab)
    for split in ("train", "val_seen", "val_unseen"):
        path = tiny_env.episodes_path(split)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_episodes(path, EpisodeSet(episodes=eps, vocab=vocab, extra={}))
    return eps
