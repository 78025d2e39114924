"""Perception benchmarks (``scripts/bench_perception.py``): figures printed and written as JSON.

Measures, in a ``val_unseen`` house of the env: captions/s of each available captioner on
frames of 128^2 and 224^2 (captioned 12 at a time, a panorama's worth); panoramic text
observations/s end to end (render the 12 views + find waypoints + caption) with the semantic
captioner (and the learned one); the learned captioner's training time and its scores on
unseen houses (trained here unless a checkpoint is given).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vlnav import VlnavError
from vlnav.config import EnvConfig, SensorConfig

SIZES = (128, 224)


def _sim(env: EnvConfig, size: int, sensors: tuple[str, ...]):
    import dataclasses

    from vlnav.sim.builtin import BuiltinSimulator

    s = env.sensor
    sensor = SensorConfig(size, size, s.hfov, s.camera_height, list(s.sensors))
    return BuiltinSimulator(dataclasses.replace(env, sensor=sensor), sensors=sensors)


def _views(env: EnvConfig, scene: str, size: int, draws: int = 4, seed: int = 0) -> list[Any]:
    """12 * draws views (all sensors) at random poses of ``scene``."""
    from vlnav.perception.base import View

    sim = _sim(env, size, ("rgb", "depth", "semantic"))
    sim.load_scene(scene)
    rng = np.random.default_rng(seed)
    views = []
    for _ in range(draws):
        sim.set_agent_state(sim.grid.random_point(rng), float(rng.uniform(-math.pi, math.pi)))
        pano = sim.panorama(sensors=("rgb", "depth", "semantic"))
        views += [
            View(pano["rgb"][k], pano["depth"][k], pano["semantic"][k], sim.objects())
            for k in range(12)
        ]
    sim.close()
    return views


def captions_per_second(captioner: Any, views: list[Any], seconds: float) -> float:
    captioner.caption(views[:12])  # warm up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        k = (n // 12) % (len(views) // 12)
        captioner.caption(views[12 * k : 12 * k + 12])
        n += 12
    return n / (time.perf_counter() - t0)


def observations_per_second(
    env: EnvConfig,
    scene: str,
    captioner: Any,
    size: int,
    seconds: float,
    waypoints: str = "straight",
) -> float:
    """TextObserver.observe at random poses (no cache): render 12 views + waypoints + caption."""
    from vlnav.perception.candidates import TextObserver

    sim = _sim(env, size, tuple(captioner.needs))
    sim.load_scene(scene)
    rng = np.random.default_rng(1)
    observer = TextObserver(sim, captioner, waypoints=waypoints)
    sim.set_agent_state(sim.grid.random_point(rng), 0.0)
    observer.observe(scene)  # warm up (shader compile, first upload)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sim.set_agent_state(sim.grid.random_point(rng), float(rng.uniform(-math.pi, math.pi)))
        observer.observe(scene)
        n += 1
    rate = n / (time.perf_counter() - t0)
    sim.close()
    return rate


def run_perception_bench(
    env: EnvConfig,
    out: str | Path,
    seconds: float = 5.0,
    checkpoint: str | None = None,
    train_minutes: float = 10.0,
    train_dir: str | Path = "runs/bench_captioner",
    pretrained: tuple[str, ...] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Run every figure; ``pretrained`` lists further captioner specs (``hf:/path``, ...)."""
    from vlnav.perception import make_captioner
    from vlnav.perception.learned import TrainCaptionerConfig, machine, train_captioner
    from vlnav.perception.pretrained import open_clip_unusable
    from vlnav.sampler import prepare_data, scene_ids

    if env.scenes.procedural:
        prepare_data(env, progress=progress)
    scene = scene_ids(env, "val_unseen")[0] if env.scenes.val_unseen else scene_ids(env, "train")[0]
    res: dict[str, Any] = {
        "machine": machine() | {"load_average_at_start": list(os.getloadavg())},
        "scene": scene,
        "seconds_per_figure": seconds,
    }

    # the learned captioner: train (or read) it first, so that its figures below are real
    if checkpoint is None:
        cfg = TrainCaptionerConfig(minutes=train_minutes)
        t0 = time.perf_counter()
        train = train_captioner(env, cfg, train_dir, progress=progress, resume=False)
        train["wall_seconds_total"] = round(time.perf_counter() - t0, 1)
        checkpoint = str(train_dir)
    else:
        path = Path(checkpoint) / "eval.json"
        if not path.is_file():
            raise VlnavError(f"no eval.json in {checkpoint}: train it with train-captioner first")
        train = json.loads(path.read_text())
    res["learned_training"] = {
        k: train.get(k)
        for k in ("checkpoint", "train_seconds", "data_seconds", "eval_seconds", "steps")
    } | {"val_unseen": train.get("val_unseen"), "config": train.get("config")}

    specs = ["semantic", f"learned:{checkpoint}", *pretrained]
    captioners: dict[str, Any] = {}
    res["unavailable"] = {}
    for spec in specs:
        try:
            captioners[spec] = make_captioner(spec)
        except VlnavError as e:
            res["unavailable"][spec] = str(e)
    reason = open_clip_unusable()
    if reason and not any(s.startswith("open_clip:") for s in specs):
        res["unavailable"]["open_clip"] = reason
    if not any(s.startswith("hf:") for s in specs):
        res["unavailable"]["hf"] = "no model given (--pretrained hf:<model id or folder>)"

    res["captions_per_s"] = {}
    for size in SIZES:
        views = _views(env, scene, size)
        for spec, cap in captioners.items():
            rate = captions_per_second(cap, views, seconds)
            res["captions_per_s"].setdefault(spec, {})[f"{size}"] = round(rate, 1)
            if progress:
                print(f"  {spec:<28} {size}^2: {rate:8.1f} captions/s", flush=True)

    res["text_observations_per_s"] = {}
    for spec in ("semantic", f"learned:{checkpoint}"):
        if spec not in captioners:
            continue
        for size in SIZES:
            rate = observations_per_second(env, scene, captioners[spec], size, seconds)
            res["text_observations_per_s"].setdefault(spec, {})[f"{size}"] = round(rate, 2)
            if progress:
                print(f"  text observations {spec:<20} {size}^2: {rate:6.2f}/s", flush=True)
    for size in SIZES:  # path waypoints: geodesic checks on top (one distance field per pose)
        rate = observations_per_second(env, scene, captioners["semantic"], size, seconds, "path")
        res["text_observations_per_s"].setdefault("semantic+path", {})[f"{size}"] = round(rate, 2)
        if progress:
            print(f"  text observations {'semantic+path':<20} {size}^2: {rate:6.2f}/s", flush=True)
    res["machine"]["load_average_at_end"] = list(os.getloadavg())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return res


def summary(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
        f"(load average at start {m['load_average_at_start'][0]:.1f})",
        "captions/s (12 views per call):",
    ]
    for spec, by in res["captions_per_s"].items():
        lines.append(f"  {spec:<30} " + "  ".join(f"{s}^2 {v:8.1f}" for s, v in by.items()))
    lines.append("panoramic text observations/s (render 12 views + waypoints + caption):")
    for spec, by in res["text_observations_per_s"].items():
        lines.append(f"  {spec:<30} " + "  ".join(f"{s}^2 {v:6.2f}" for s, v in by.items()))
    t = res["learned_training"]
    s = t.get("val_unseen") or {}
    lines.append(
        f"learned captioner: trained {t['steps']} steps in {t['train_seconds'] / 60:.1f} min "
        f"(+{t['data_seconds']:.0f} s rendering); val_unseen: object P/R/F1 "
        f"{s.get('object_precision', 0):.3f}/{s.get('object_recall', 0):.3f}/"
        f"{s.get('object_f1', 0):.3f}, room accuracy {s.get('room_accuracy', 0):.3f}, "
        f"BLEU-4 {s.get('bleu4', 0):.3f}"
    )
    for spec, why in res.get("unavailable", {}).items():
        lines.append(f"not measured: {spec}: {why}")
    return "\n".join(lines)
