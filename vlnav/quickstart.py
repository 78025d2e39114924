"""``vlnav quickstart``: the whole pipeline that exists, on the embedded default, in one go.

Generates the houses and episodes of the env (if missing; instructions by the template
speaker), evaluates the baseline agents on ``val_unseen``, trains a small language-model
policy on text observations (``configs/quickstart.yaml``: imitation + one DAgger round) and
evaluates it on the same episodes, then writes a report folder: the metrics table (markdown +
JSON), the candidate views of one decision as text beside their images, and episode videos
(the egocentric view beside the top-down map, the instruction and the chosen candidate's text
at each step).
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
    policy_config: str | Path | None = "configs/quickstart.yaml",
    policy_overrides: tuple[str, ...] = (),
) -> Path:
    from vlnav.sampler import prepare_data

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/4] houses and episodes in {config.data_dir}")
    prepare_data(config, progress=progress)
    print(f"[2/4] evaluating {', '.join(BASELINES)} on {episodes} val_unseen episodes")
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
    if policy_config is not None:
        from vlnav.train import Trainer, load_train_config

        print("[3/4] training a small language-model policy (imitation + DAgger)")
        tcfg = load_train_config(
            policy_config if Path(policy_config).is_file() else None,
            [f"out={out / 'policy-run'}", *policy_overrides],
        )
        ckpt = Trainer(tcfg, progress=progress, env=config).run()
        results["policy"] = evaluate(
            config,
            "policy",
            "val_unseen",
            episodes,
            workers,
            out / "eval" / "policy",
            agent_kwargs={"checkpoint": str(ckpt)},
            progress=progress,
        )
    rows = {a: r.metrics for a, r in results.items()}
    table = format_table(rows)
    (out / "metrics.md").write_text(table + "\n")
    (out / "metrics.json").write_text(
        json.dumps({"env": config.name, "split": "val_unseen", "agents": rows}, indent=2) + "\n"
    )
    print(table)
    print(f"[4/4] rendering {videos} episode videos")
    media = _videos(config, results, out / "videos", videos, progress)
    figure = _candidates_figure(config, results, out / "candidates")
    _write_html(out, table, rows, media, figure)
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
    main = "policy" if "policy" in results else "oracle"
    picks = [(main, r) for r in results[main].records[: max(count - 1, 1)]]
    if count > 1:
        picks += [("oracle", results["oracle"].records[0])]
    try:
        for agent, rec in tqdm(picks, desc="videos", disable=not progress, leave=False):
            ep = by_id[rec["episode_id"]]
            sim.load_scene(ep.scene_id)
            tmap = TopDownMap(sim.spec, sim.grid)
            frames = episode_frames(
                sim,
                ep,
                rec["actions"],
                map=tmap,
                instruction=ep.instruction_text,
                notes=_notes(rec),
            )
            path = write_video(frames, folder / f"{agent}_ep{rec['episode_id']}.mp4")
            made.append((agent, rec, path))
    finally:
        sim.close()
    return made


def _notes(rec: dict) -> list[str | None] | None:
    """Per frame, the candidate the policy chose at the last decision (from its trace)."""
    trace = rec.get("extra", {}).get("trace")
    if not trace:
        return None
    notes: list[str | None] = [None] * (len(rec["actions"]) + 1)
    for k, d in enumerate(trace):
        end = trace[k + 1]["step"] if k + 1 < len(trace) else len(notes)
        text = f"chose: {d['direction']} - {d['text']}" if d["label"] != "<STOP>" else "chose: Stop"
        for t in range(d["step"], min(end, len(notes))):
            notes[t] = text
    return notes


def _candidates_figure(config: EnvConfig, results: dict, folder: Path) -> dict | None:
    """The first decision of one episode: each candidate view's image and its text."""
    import cv2

    from vlnav.episodes import load_episodes
    from vlnav.perception.base import make_captioner
    from vlnav.perception.candidates import TextObserver
    from vlnav.sim.builtin import BuiltinSimulator

    recs = results[next(iter(results))].records
    if not recs:
        return None
    eps = {str(e.episode_id): e for e in load_episodes(config.episodes_path("val_unseen")).episodes}
    ep = eps[recs[0]["episode_id"]]
    sim = BuiltinSimulator(config, sensors=("rgb",))
    try:
        sim.reset(ep.scene_id, ep.start_position, ep.start_rotation)
        obs = TextObserver(sim, make_captioner("semantic", max_objects=2)).observe(ep.scene_id)
        pano = sim.panorama(sensors=("rgb",))
    finally:
        sim.close()
    folder.mkdir(parents=True, exist_ok=True)
    cands = []
    for c in obs.candidates:
        path = folder / f"view_{c.index:02d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(pano["rgb"][c.index], cv2.COLOR_RGB2BGR))
        cands.append((path, c.to_text()))
    (folder / "observation.txt").write_text(obs.to_text() + "\n")
    return {"episode": ep, "candidates": cands, "text": obs.to_text()}


def _write_html(out: Path, table: str, rows: dict, media: list, figure: dict | None = None) -> None:
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
    cand_html = ""
    if figure:
        cells = "".join(
            f"<figure style='display:inline-block;width:230px;vertical-align:top'>"
            f"<img src='{p.relative_to(out).as_posix()}' width='224'>"
            f"<figcaption><small>{html.escape(t)}</small></figcaption></figure>"
            for p, t in figure["candidates"]
        )
        cand_html = (
            "<h2>What the policy reads: candidate views as text</h2>"
            f"<p>Instruction: <i>{html.escape(figure['episode'].instruction_text)}</i></p>"
            f"{cells}<pre>{html.escape(figure['text'])}</pre>"
        )
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>vlnav quickstart</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;"
        "border-bottom:1px solid #ddd}</style></head><body>"
        f"<h1>vlnav quickstart</h1><h2>val_unseen</h2><table><tr>{head}</tr>{body}</table>"
        f"{cand_html}<h2>Episodes</h2>{vids}</body></html>\n"
    )
