"""``vlnav quickstart``: the whole pipeline that exists, on the embedded default, in one go.

Generates the houses and episodes of the env (if missing), evaluates the baseline agents
on ``val_unseen``, and writes a report folder: the metrics table (markdown + JSON), and for
a few episodes a video of the egocentric view beside the top-down map.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from vlnav.config import EnvConfig
from vlnav.evaluate import evaluate
from vlnav.metrics import format_table

BASELINES = ("random", "forward", "oracle")


def run_quickstart(
    config: EnvConfig,
    out: Path,
    episodes: int = 100,
    workers: int = 2,
    videos: int = 3,
    progress: bool = True,
) -> Path:
    from vlnav.sampler import prepare_data

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/3] houses and episodes in {config.data_dir}")
    prepare_data(config, progress=progress)
    print(f"[2/3] evaluating {', '.join(BASELINES)} on {episodes} val_unseen episodes")
    results = {}
    for agent in BASELINES:
        results[agent] = evaluate(
            config,
            agent,
            "val_unseen",
            episodes,
            workers,
            out / "eval" / agent,
            progress=progress,
        )
    rows = {a: r.metrics for a, r in results.items()}
    table = format_table(rows)
    (out / "metrics.md").write_text(table + "\n")
    (out / "metrics.json").write_text(
        json.dumps({"env": config.name, "split": "val_unseen", "agents": rows}, indent=2) + "\n"
    )
    print(table)
    print(f"[3/3] rendering {videos} episode videos")
    media = _videos(config, results, out / "videos", videos, progress)
    _write_html(out, table, rows, media)
    print(f"quickstart finished in {time.time() - t0:.0f} s")
    return out


def _videos(config: EnvConfig, results: dict, folder: Path, count: int, progress: bool) -> list:
    from tqdm import tqdm

    from vlnav.episodes import load_episodes
    from vlnav.sim.builtin import BuiltinSimulator
    from vlnav.viz import TopDownMap, episode_frames, write_video

    if count <= 0:
        return []
    by_id = {
        str(e.episode_id): e for e in load_episodes(config.episodes_path("val_unseen")).episodes
    }
    sim = BuiltinSimulator(config, sensors=("rgb",))
    made = []
    picks = [("oracle", r) for r in results["oracle"].records[: max(count - 1, 1)]]
    if count > 1:
        picks += [("forward", results["forward"].records[0])]
    try:
        for agent, rec in tqdm(picks, desc="videos", disable=not progress, leave=False):
            ep = by_id[rec["episode_id"]]
            sim.load_scene(ep.scene_id)
            tmap = TopDownMap(sim.spec, sim.grid)
            frames = episode_frames(
                sim, ep, rec["actions"], map=tmap, instruction=ep.instruction_text
            )
            path = write_video(frames, folder / f"{agent}_ep{rec['episode_id']}.mp4")
            made.append((agent, rec, path))
    finally:
        sim.close()
    return made


def _write_html(out: Path, table: str, rows: dict, media: list) -> None:
    from vlnav.metrics import METRIC_NAMES

    head = "".join(f"<th>{m}</th>" for m in ("agent", "episodes", *METRIC_NAMES))
    body = ""
    for agent, m in rows.items():
        cells = "".join(f"<td>{m.get(k, float('nan')):.3f}</td>" for k in METRIC_NAMES)
        body += f"<tr><td>{agent}</td><td>{m['episodes']}</td>{cells}</tr>"
    vids = ""
    for agent, rec, path in media:
        rel = path.relative_to(out).as_posix()
        m = rec["metrics"]
        vids += (
            f"<figure><video src='{rel}' controls loop muted width='640'></video>"
            f"<figcaption>{agent}, episode {rec['episode_id']} (SR {m['SR']:.0f}, "
            f"SPL {m['SPL']:.2f}): {html.escape(rec['instruction'])}</figcaption></figure>"
        )
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>vlnav quickstart</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;"
        "border-bottom:1px solid #ddd}</style></head><body>"
        f"<h1>vlnav quickstart</h1><h2>val_unseen</h2><table><tr>{head}</tr>{body}</table>"
        f"<h2>Episodes</h2>{vids}</body></html>\n"
    )
