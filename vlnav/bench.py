"""Simulator benchmarks (``scripts/bench_sim.py``): figures printed and written as JSON.

Measures, in a typical generated house: agent steps/s (a step = one action + one rendered
observation) for RGB only and RGB + depth + instance ids at 128^2 and 224^2, in one process
and in two worker processes; 12-view panoramas/s; house generation time; geodesic
queries/s; peak memory.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from vlnav.config import EnvConfig, SensorConfig


def machine() -> dict[str, Any]:
    """The CPU model, core count and Python version, recorded with every benchmark."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def cpu_times() -> dict[str, int] | None:
    """The machine's CPU time counters (clock ticks, all cores) from /proc/stat, or None
    where there is none."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {n: int(v) for n, v in zip(names, first[1:])}


def steal_fraction(before: dict[str, int] | None, after: dict[str, int] | None) -> float | None:
    """The share of the machine's CPU time between two ``cpu_times`` readings that its
    hypervisor gave to other guests (steal): figures measured while it is high are slow."""
    if not before or not after:
        return None
    total = sum(after.values()) - sum(before.values())
    return (after["steal"] - before["steal"]) / total if total > 0 else None


def _step_loop(
    config: EnvConfig, scene: str, seconds: float, sensors: tuple[str, ...], seed: int = 0
) -> tuple[int, float]:
    """Random walk (forward / turns) for ``seconds``; returns (steps, elapsed)."""
    from vlnav.sim.builtin import BuiltinSimulator

    sim = BuiltinSimulator(config, sensors=sensors)
    sim.load_scene(scene)
    rng = np.random.default_rng(seed)
    start = sim.grid.random_point(rng)
    sim.reset(scene, start, [0.0, 0.0, 0.0, 1.0])
    for _ in range(20):  # warm up (shader compile, first upload)
        sim.step(1)
    actions = rng.choice([1, 2, 3], size=100_000, p=[0.6, 0.2, 0.2])
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for a in actions[n % 90_000 : n % 90_000 + 100]:
            sim.step(int(a))
        n += 100
    elapsed = time.perf_counter() - t0
    sim.close()
    return n, elapsed


def _worker(args: tuple) -> tuple[int, float]:
    return _step_loop(*args)


def run_benchmarks(
    data_dir: str | Path, seconds: float = 3.0, workers: int = 2, out: str | Path | None = None
) -> dict[str, Any]:
    from vlnav.scenes.generator import GeneratorConfig, generate_house, generate_houses
    from vlnav.sim.builtin import BuiltinSimulator
    from vlnav.sim.navgrid import NavGrid

    data_dir = Path(data_dir)
    results: dict[str, Any] = {"machine": machine(), "seconds_per_figure": seconds}

    # house generation
    t0 = time.perf_counter()
    n_gen = 5
    for i in range(n_gen):
        generate_house(1000 + i, f"bench_{i}", GeneratorConfig())
    results["house_generation_s"] = (time.perf_counter() - t0) / n_gen
    scenes_dir = data_dir / "scenes"
    generate_houses(1, 7, scenes_dir, GeneratorConfig(), progress=False)
    scene = "house_0000"
    from vlnav.scenes.spec import SceneSpec

    spec = SceneSpec.load(scenes_dir / scene / f"{scene}.json")
    results["house"] = {"rooms": len(spec.rooms), "objects": len(spec.objects)}

    # geodesic queries (random pairs; distance fields cached per goal as in evaluation)
    t0 = time.perf_counter()
    grid = NavGrid.from_spec(spec)
    results["navgrid_build_s"] = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    goals = [grid.random_point(rng) for _ in range(5)]
    pts = [grid.random_point(rng) for _ in range(200)]
    t0 = time.perf_counter()
    for g in goals:
        grid.distance_field(g)
    results["distance_field_s"] = (time.perf_counter() - t0) / len(goals)
    t0 = time.perf_counter()
    q = 0
    for g in goals:
        for p in pts:
            grid.geodesic_distance(p, g)
            q += 1
    results["geodesic_queries_per_s_cached_goal"] = q / (time.perf_counter() - t0)

    # steps per second
    steps: dict[str, Any] = {}
    for res in (128, 224):
        cfg = EnvConfig(data_dir=str(data_dir), sensor=SensorConfig(width=res, height=res))
        for name, sensors in (("rgb", ("rgb",)), ("rgb+depth+ids", ("rgb", "depth", "semantic"))):
            n, el = _step_loop(cfg, scene, seconds, sensors)
            key = f"{res}x{res} {name}"
            steps[key] = {"1 process": n / el}
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers) as pool:
                outs = pool.map(
                    _worker, [(cfg, scene, seconds, sensors, s) for s in range(workers)]
                )
            steps[key][f"{workers} processes"] = sum(n for n, _ in outs) / max(el for _, el in outs)
            print(
                f"steps/s {key:>22}: " + ", ".join(f"{k} {v:,.0f}" for k, v in steps[key].items())
            )
    results["steps_per_s"] = steps

    # panoramas
    pano: dict[str, float] = {}
    for res in (128, 224):
        cfg = EnvConfig(data_dir=str(data_dir), sensor=SensorConfig(width=res, height=res))
        sim = BuiltinSimulator(cfg)
        sim.reset(scene, grid.random_point(rng), [0, 0, 0, 1])
        sim.panorama()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            sim.panorama()
            sim.step(2)
            n += 1
        pano[f"{res}x{res} rgb+depth+ids"] = n / (time.perf_counter() - t0)
        sim.close()
    results["panoramas_per_s"] = pano
    results["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if out:
        import json

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2) + "\n")
    return results


def summary(results: dict[str, Any]) -> str:
    lines = [f"machine: {results['machine']}"]
    lines.append(f"house generation: {results['house_generation_s'] * 1000:.0f} ms/house")
    lines.append(
        f"navgrid build {results['navgrid_build_s'] * 1000:.0f} ms, distance field "
        f"{results['distance_field_s'] * 1000:.0f} ms, geodesic queries "
        f"{results['geodesic_queries_per_s_cached_goal']:,.0f}/s"
    )
    for k, v in results["steps_per_s"].items():
        lines.append(f"steps/s {k}: " + ", ".join(f"{a} {b:,.0f}" for a, b in v.items()))
    for k, v in results["panoramas_per_s"].items():
        lines.append(f"12-view panoramas/s {k}: {v:,.0f}")
    lines.append(f"peak memory: {results['peak_memory_mb']:.0f} MB")
    return "\n".join(lines)
