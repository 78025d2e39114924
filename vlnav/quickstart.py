"""``vlnav quickstart``: the whole pipeline that exists, on the embedded default, in one go.

Generates the houses and episodes of the env (if missing; instructions by the template
speaker), evaluates the baseline agents on ``val_unseen``, trains a small language-model
policy on text observations (``configs/quickstart.yaml``: imitation + one DAgger round) and
evaluates it on the same episodes, then writes a report folder with :func:`write_report`.

The report (``index.html``, with the raw files it shows beside it)::

    index.html            the page: everything below, opened in any browser
    metrics.md / .json    the metrics table (every agent, baselines included)
    eval/<agent>/         per-episode records (records.jsonl) and metrics of each agent
    plots/metrics.svg     SR, SPL, nDTW and OSR by agent
    plots/distance.svg    fraction of episodes that ended within d metres of the goal
    candidates/           the candidate views of one decision, as images and as text
    videos/*.webm, *.mp4  episodes (VP9 and H.264): the egocentric view, the top-down map,
                          the candidates' captions (the chosen one highlighted) and the
                          instruction at each step
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlnav.config import EnvConfig
from vlnav.evaluate import EvalResult, evaluate
from vlnav.metrics import METRIC_NAMES, format_table

BASELINES = ("random", "forward", "oracle")
DEFAULT_CAPTIONER: dict[str, Any] = {"name": "semantic", "kwargs": {"max_objects": 2}}
VIDEO_FORMATS = (".webm", ".mp4")  # <video> sources in this order: VP9 first, H.264 fallback


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
            restart=True,  # the quickstart's own folders: a changed run starts over
        )
    captioner, waypoints = DEFAULT_CAPTIONER, "straight"
    if policy_config is not None:
        import dataclasses

        from vlnav.train import Trainer, load_train_config

        print("[3/4] training a small language-model policy (imitation + DAgger)")
        tcfg = load_train_config(
            policy_config if Path(policy_config).is_file() else None,
            [f"out={out / 'policy-run'}", *policy_overrides],
        )
        captioner, waypoints = dataclasses.asdict(tcfg.captioner), tcfg.waypoints
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
            batch=32,  # episodes stepped together, decisions batched
            restart=True,  # a retrained policy is evaluated afresh
        )
    print(format_table({a: r.metrics for a, r in results.items()}))
    print(f"[4/4] writing the report ({videos} episode videos)")
    write_report(
        config,
        results,
        out,
        videos=videos,
        progress=progress,
        captioner=captioner,
        waypoints=waypoints,
    )
    print(f"quickstart finished in {time.time() - t0:.0f} s")
    return out


def write_report(
    config: EnvConfig,
    results: dict[str, EvalResult],
    out: str | Path,
    videos: int = 3,
    progress: bool = False,
    captioner: dict[str, Any] | None = None,
    size: int = 256,
    waypoints: str = "straight",
) -> Path:
    """Write the report folder for evaluation results and return its ``index.html``.

    Args:
        config: the env the agents were evaluated in (houses and episodes are read from it).
        results: agent name -> :class:`~vlnav.evaluate.EvalResult`, in table order; a
            ``policy`` entry (records with a decision trace) is the one the videos follow.
        out: the report folder (created).
        videos: how many episode videos: the main agent's first episodes, then the first
            episode of the other agents (oracle first).
        captioner: ``{"name": spec, "kwargs": {...}}`` of the captioner whose candidate
            captions the videos show (the policy's; default semantic, 2 objects).
        size: height in pixels of the videos' image row.
        waypoints: how the policy's candidates were found (``straight`` or ``path``), so
            that the videos show the candidates it chose among.

    Example:
        >>> results = {a: evaluate(cfg, a, "val_unseen", 2, 1, out / "eval" / a)
        ...            for a in ("random", "oracle")}
        >>> write_report(cfg, results, out, videos=2)
        PosixPath('.../index.html')
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    captioner = captioner or DEFAULT_CAPTIONER
    rows = {a: r.metrics for a, r in results.items()}
    split = next(iter(results.values())).split if results else "val_unseen"
    (out / "metrics.md").write_text(format_table(rows) + "\n")
    (out / "metrics.json").write_text(
        json.dumps({"env": config.name, "split": split, "agents": rows}, indent=2) + "\n"
    )
    plots = _plots(results, out / "plots", config.episodes.success_radius)
    media = _videos(config, results, out / "videos", videos, progress, captioner, size, waypoints)
    figure = _candidates_figure(config, results, out / "candidates", captioner, waypoints)
    index = out / "index.html"
    index.write_text(_html(out, config, split, results, plots, media, figure))
    return index


# ---------------------------------------------------------------- plots
def _plots(results: dict[str, EvalResult], folder: Path, radius: float) -> list[tuple[Path, str]]:
    """SR/SPL/nDTW/OSR by agent, and the distribution of final distances to the goal."""
    import numpy as np

    from vlnav.viz import bar_chart_svg, line_chart_svg

    if not results:
        return []
    bars = bar_chart_svg(
        {a: r.metrics for a, r in results.items()},
        ["SR", "SPL", "nDTW", "OSR"],
        folder / "metrics.svg",
        title="Success and path fidelity by agent",
    )
    lines = {}
    finals = {a: [rec["distance_to_goal"][-1] for rec in r.records] for a, r in results.items()}
    xmax = max(12.0, float(np.ceil(max((max(d) for d in finals.values() if d), default=1.0))))
    for agent, d in finals.items():
        if d:
            xs = np.linspace(0.0, xmax, 121)
            lines[agent] = (xs.tolist(), [float(np.mean(np.asarray(d) <= x)) for x in xs])
    dist = line_chart_svg(
        lines,
        folder / "distance.svg",
        title="Episodes that ended within d metres of the goal",
        xlabel="d: geodesic distance to the goal at the end (m)",
        ylabel="fraction of episodes",
        xmax=xmax,
        marker_x=radius,
        marker_label=f"success radius {radius:g} m",
    )
    return [
        (bars, "Success rate (SR), success weighted by path length (SPL), normalised dynamic "
         "time warping (nDTW) and oracle success (OSR) of each agent."),
        (dist, "How close to the goal each agent ended its episodes; success is stopping "
         "inside the dashed line."),
    ]  # fmt: skip


# ---------------------------------------------------------------- videos
def _picks(results: dict[str, EvalResult], count: int) -> list[tuple[str, dict]]:
    """The main agent's (policy, else oracle, else the first) first episodes, then the
    first episode of each other agent, oracle first; ``count`` in all."""
    if count <= 0 or not results:
        return []
    main = next((a for a in ("policy", "oracle") if a in results), next(iter(results)))
    picks = [(main, rec) for rec in results[main].records[: max(count - 1, 1)]]
    others = sorted((a for a in results if a != main), key=lambda a: a != "oracle")
    for agent in others:
        if len(picks) >= count:
            break
        if results[agent].records:
            picks.append((agent, results[agent].records[0]))
    for rec in results[main].records[len(picks) :]:  # too few other agents: more of main
        if len(picks) >= count:
            break
        picks.append((main, rec))
    return picks[:count]


def _videos(
    config: EnvConfig,
    results: dict[str, EvalResult],
    folder: Path,
    count: int,
    progress: bool,
    captioner: dict[str, Any],
    size: int = 256,
    waypoints: str = "straight",
) -> list[tuple[str, dict, list[Path]]]:
    from tqdm import tqdm

    from vlnav.episodes import load_episodes
    from vlnav.perception.base import make_captioner
    from vlnav.perception.candidates import TextObserver
    from vlnav.sim.builtin import BuiltinSimulator
    from vlnav.viz import TopDownMap, episode_frames, write_videos

    picks = _picks(results, count)
    if not picks:
        return []
    split = next(iter(results.values())).split
    by_id = {str(e.episode_id): e for e in load_episodes(config.episodes_path(split)).episodes}
    sim = BuiltinSimulator(config, sensors=("rgb",))
    cap = make_captioner(captioner["name"], **captioner.get("kwargs", {}))
    observer = TextObserver(sim, cap, waypoints=waypoints)
    made = []
    try:
        for agent, rec in tqdm(picks, desc="videos", disable=not progress, leave=False):
            ep = by_id[rec["episode_id"]]
            sim.load_scene(ep.scene_id)
            frames = episode_frames(
                sim,
                ep,
                rec["actions"],
                map=TopDownMap(sim.spec, sim.grid),
                instruction=ep.instruction_text,
                size=size,
                notes=_notes(rec),
                candidates=_candidate_lines(observer, ep.scene_id, rec),
            )
            stem = folder / f"{agent}_ep{rec['episode_id']}"
            paths = write_videos(frames, [stem.with_suffix(s) for s in VIDEO_FORMATS])
            made.append((agent, rec, paths))
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


def _candidate_lines(
    observer: Any, scene_id: str, rec: dict
) -> Callable[[int, Any], list[tuple[str, bool]] | None]:
    """The panel of the videos: each candidate's caption at the agent's pose.

    For an agent with a decision trace (the policy) the candidates of each decision, shown
    from the frame of that decision on, the chosen one highlighted; for the others (no
    decisions) the candidates at every step.
    """
    from vlnav.policy.prompt import LABELS, STOP_LABEL

    trace = rec.get("extra", {}).get("trace")
    chosen = {int(d["step"]): d["label"] for d in trace} if trace else None

    def lines(t: int, sim: Any) -> list[tuple[str, bool]] | None:
        if chosen is not None and t not in chosen:
            return None  # between decisions: keep the last decision's candidates
        label = chosen.get(t) if chosen is not None else None
        obs = observer.observe(scene_id)
        out = [
            (f"{c.direction}: {c.caption.text}", LABELS[c.index] == label) for c in obs.candidates
        ]
        return [*out, ("Stop", label == STOP_LABEL)]

    return lines


# ---------------------------------------------------------------- candidate views
def _candidates_figure(
    config: EnvConfig,
    results: dict[str, EvalResult],
    folder: Path,
    captioner: dict[str, Any],
    waypoints: str = "straight",
) -> dict | None:
    """The first decision of one episode: each candidate view's image and its text."""
    import cv2

    from vlnav.episodes import load_episodes
    from vlnav.perception.base import make_captioner
    from vlnav.perception.candidates import TextObserver
    from vlnav.sim.builtin import BuiltinSimulator

    if not results:
        return None
    first = next(iter(results.values()))
    if not first.records:
        return None
    eps = {str(e.episode_id): e for e in load_episodes(config.episodes_path(first.split)).episodes}
    ep = eps[first.records[0]["episode_id"]]
    sim = BuiltinSimulator(config, sensors=("rgb",))
    try:
        sim.reset(ep.scene_id, ep.start_position, ep.start_rotation)
        cap = make_captioner(captioner["name"], **captioner.get("kwargs", {}))
        obs = TextObserver(sim, cap, waypoints=waypoints).observe(ep.scene_id)
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


# ---------------------------------------------------------------- the page
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1em 0} td,th{padding:4px 10px;border-bottom:1px solid #ddd}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums} tr.main td{font-weight:bold}
tr.baseline td:first-child::after{content:" (baseline)";color:#888;font-weight:normal}
figure{margin:1em 0} figcaption{color:#444;font-size:.92em;max-width:1100px}
.cands figure{display:inline-block;width:230px;vertical-align:top;margin:.3em}
video{max-width:100%;border:1px solid #ccc} img.plot{border:1px solid #eee;max-width:100%}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto} .files a{margin-right:1em}
"""


def _rel(path: Path, out: Path) -> str | None:
    try:
        return Path(path).resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        return None


def _html(
    out: Path,
    config: EnvConfig,
    split: str,
    results: dict[str, EvalResult],
    plots: list[tuple[Path, str]],
    media: list[tuple[str, dict, list[Path]]],
    figure: dict | None,
) -> str:
    esc = html.escape
    main = "policy" if "policy" in results else None
    head = "<th>agent</th><th class='num'>episodes</th>" + "".join(
        f"<th class='num'>{m}</th>" for m in METRIC_NAMES
    )
    body = ""
    for agent, r in results.items():
        m = r.metrics
        cells = "".join(
            f"<td class='num'>{m[k]:.{2 if k in ('TL', 'NE') else 3}f}</td>"
            if k in m
            else "<td>-</td>"
            for k in METRIC_NAMES
        )
        cls = "main" if agent == main else "baseline" if agent in BASELINES else ""
        rec_link = _rel(Path(r.out_dir) / "records.jsonl", out) if r.out_dir else None
        name = esc(agent)
        if rec_link and (out / rec_link).is_file():
            name = f"<a href='{esc(rec_link)}' title='per-episode records'>{name}</a>"
        body += (
            f"<tr class='{cls}' data-agent='{esc(agent)}'><td>{name}</td>"
            f"<td class='num'>{int(m.get('episodes', 0))}</td>{cells}</tr>"
        )
    files = "".join(
        f"<a href='{f}'>{f}</a>" for f in ("metrics.json", "metrics.md") if (out / f).is_file()
    )
    plot_html = "".join(
        f"<figure><img class='plot' src='{esc(_rel(p, out) or p.name)}' alt='{esc(p.stem)}'>"
        f"<figcaption>{esc(c)}</figcaption></figure>"
        for p, c in plots
    )
    cand_html = ""
    if figure:
        cells = "".join(
            f"<figure><img src='{esc(_rel(p, out) or p.name)}' width='224' alt='view {p.stem}'>"
            f"<figcaption><small>{esc(t)}</small></figcaption></figure>"
            for p, t in figure["candidates"]
        )
        cand_html = (
            "<h2>What the policy reads: candidate views as text</h2>"
            f"<p>Instruction: <i>{esc(figure['episode'].instruction_text)}</i></p>"
            f"<div class='cands'>{cells}</div><pre>{esc(figure['text'])}</pre>"
        )
    types = {".webm": 'video/webm; codecs="vp9"', ".mp4": "video/mp4"}
    vids = ""
    for agent, rec, paths in media:
        m = rec["metrics"]
        sources = "".join(
            f"<source src='{esc(_rel(p, out) or p.name)}' type='{esc(types[p.suffix])}'>"
            for p in paths
            if p.suffix in types
        )
        vids += (
            f"<figure><video controls loop muted preload='auto' playsinline>{sources}</video>"
            f"<figcaption><b>{esc(agent)}</b>, episode {esc(str(rec['episode_id']))} "
            f"(SR {m['SR']:.0f}, SPL {m['SPL']:.2f}, NE {m['NE']:.2f} m): "
            f"<i>{esc(rec['instruction'])}</i></figcaption></figure>"
        )
    n = max((int(r.metrics.get("episodes", 0)) for r in results.values()), default=0)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>vlnav report: {esc(config.name)} {esc(split)}</title><style>{_CSS}</style>"
        "</head><body>"
        f"<h1>vlnav report</h1><p class='sub'>env <b>{esc(config.name)}</b>, split "
        f"<b>{esc(split)}</b>, {n} episodes per agent</p>"
        f"<h2>Metrics</h2><table id='metrics'><tr>{head}</tr>{body}</table>"
        "<p class='sub'>TL trajectory length, NE navigation error (m); OSR, SR, SPL, nDTW, SDTW, "
        "CLS are fractions (VLN-CE definitions, 3 m success radius). Raw data: "
        f"<span class='files'>{files}</span> and each agent's per-episode records (its name).</p>"
        f"<h2>Plots</h2>{plot_html}"
        f"<h2>Episodes</h2><p class='sub'>Each video: the egocentric view, the top-down map "
        "(reference path green, agent blue, goal and its success circle red), the candidate "
        "views' captions at each decision (the chosen one highlighted), and the instruction.</p>"
        f"{vids}{cand_html}</body></html>\n"
    )
