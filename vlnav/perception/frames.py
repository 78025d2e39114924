"""Frames rendered at random navigable poses and headings, with their semantic captions.

The training and evaluation data of the ``learned`` captioner: each draw puts the agent at a
random free cell of a house, facing a random heading, and renders the 12-view panorama (one
GL pass per view), so frames come at hundreds per second at 64 x 64 on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlnav.config import EnvConfig, SensorConfig
from vlnav.perception.base import Caption, View


@dataclass
class FrameSet:
    rgb: np.ndarray  # (N, S, S, 3) uint8
    captions: list[Caption] = field(default_factory=list)  # semantic captions of the frames
    scenes: list[str] = field(default_factory=list)  # scene id of each frame
    labels: np.ndarray | None = None  # (N, S, S) uint8 class ids (label_classes), if asked

    def __len__(self) -> int:
        return len(self.captions)


def render_frames(
    config: EnvConfig,
    scenes: list[str],
    count: int,
    size: int = 64,
    seed: int = 0,
    progress: bool = False,
    desc: str = "rendering frames",
    labels: bool = False,
) -> FrameSet:
    """``count`` frames (a multiple of 12 is drawn, then trimmed) spread evenly over
    ``scenes``, at ``size`` x ``size`` pixels, captioned by the default semantic captioner.
    With ``labels``, also each pixel's class (:func:`label_classes`) from the instance ids."""
    from tqdm import tqdm

    from vlnav.perception.semantic import SemanticCaptioner
    from vlnav.sim.builtin import BuiltinSimulator

    cfg = dataclasses.replace(config, sensor=_sensor(config.sensor, size))
    sim = BuiltinSimulator(cfg, sensors=("rgb", "depth", "semantic"))
    captioner = SemanticCaptioner()
    rng = np.random.default_rng(seed)
    draws = math.ceil(count / 12)
    per_scene = np.full(len(scenes), draws // len(scenes))
    per_scene[: draws % len(scenes)] += 1
    rgb = np.empty((draws * 12, size, size, 3), np.uint8)
    lab = np.empty((draws * 12, size, size), np.uint8) if labels else None
    classes = {c: i for i, c in enumerate(label_classes())}
    captions: list[Caption] = []
    names: list[str] = []
    bar = tqdm(total=draws * 12, desc=desc, unit="frame", disable=not progress, leave=False)
    n = 0
    try:
        for scene, k in zip(scenes, per_scene.tolist()):
            sim.load_scene(scene)
            objects = sim.objects()
            lut = _class_lut(objects, classes) if labels else None
            for _ in range(k):
                sim.set_agent_state(
                    sim.grid.random_point(rng), float(rng.uniform(-math.pi, math.pi))
                )
                pano = sim.panorama(sensors=("rgb", "depth", "semantic"))
                views = [
                    View(depth=pano["depth"][v], semantic=pano["semantic"][v], objects=objects)
                    for v in range(12)
                ]
                captions += captioner.caption(views)
                rgb[n : n + 12] = pano["rgb"]
                if lab is not None:
                    lab[n : n + 12] = lut[np.clip(pano["semantic"], 0, len(lut) - 1)]
                names += [scene] * 12
                n += 12
                bar.update(12)
    finally:
        bar.close()
        sim.close()
    return FrameSet(
        rgb[:count], captions[:count], names[:count], lab[:count] if lab is not None else None
    )


def label_classes() -> list[str]:
    """Pixel classes: "other", "wall", "ceiling", "doorway", one floor per room type
    ("floor:kitchen", ...), then the object categories of the house vocabulary."""
    from vlnav.perception.text import text_vocabulary

    tv = text_vocabulary()
    rooms = sorted(" ".join(r) for r in tv.rooms)
    cats = sorted(" ".join(c) for c in tv.categories)
    return ["other", "wall", "ceiling", "doorway", *(f"floor:{r}" for r in rooms), *cats]


def _class_lut(objects: dict[int, dict[str, Any]], classes: dict[str, int]) -> np.ndarray:
    """instance id -> class id (0 for ids the vocabulary does not know)."""
    lut = np.zeros(max(objects, default=0) + 1, np.uint8)
    for iid, info in objects.items():
        cat = info["category"]
        if cat == "floor":
            cat = f"floor:{info.get('room_type')}"
        lut[iid] = classes.get(cat, 0)
    return lut


def _sensor(s: SensorConfig, size: int) -> SensorConfig:
    return SensorConfig(
        width=size, height=size, hfov=s.hfov, camera_height=s.camera_height, sensors=s.sensors
    )


def frames_summary(frames: FrameSet) -> dict[str, Any]:
    """How many frames, captions with a room, mean mentions per caption."""
    n = max(1, len(frames))
    return {
        "frames": len(frames),
        "scenes": sorted(set(frames.scenes)),
        "with_room": sum(c.room is not None for c in frames.captions) / n,
        "mentions_per_caption": sum(len(c.mentions) for c in frames.captions) / n,
    }
