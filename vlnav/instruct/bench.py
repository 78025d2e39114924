"""Speaker benchmarks (``scripts/bench_instruct.py``): figures printed and written as JSON.

Measures, on episodes sampled in freshly generated houses:

* ``template``: instructions/s of the speaker alone, and episodes/s of the whole
  ``run_instruct`` (summaries, validation, R2R-CE file), without and with the text
  trajectories;
* ``openai`` against the local stub server (``vlnav.instruct.stub_server``, run in its own
  process, answering at once): replies/s at concurrency 1 and 8, i.e. the client's own
  overhead per request (HTTP, JSON, thread pool); then with a simulated model latency of
  50 ms per reply, where concurrency pays;
* the openai ``run_instruct`` end to end at concurrency 8 (cache writes included), and
  the same run again, answered entirely from the cache (resume).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vlnav.bench import machine


class _ServerProcess:
    """The stub server in a child process (so it does not share the client's GIL)."""

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vlnav.instruct.stub_server", "--latency", str(latency)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self.proc.stdout.readline().strip()

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def run_benchmarks(
    episodes: int = 300, requests: int = 200, out: str | Path | None = None, progress: bool = False
) -> dict[str, Any]:
    from vlnav.config import EnvConfig, EpisodesConfig, ScenesConfig
    from vlnav.episodes import load_episodes
    from vlnav.instruct.config import InstructConfig, OpenAIConfig
    from vlnav.instruct.openai_client import OpenAISpeaker
    from vlnav.instruct.pipeline import Item, _request, _Scenes, item_seed, run_instruct
    from vlnav.instruct.prompts import PromptBook
    from vlnav.instruct.speakers import SpeakerRequest
    from vlnav.instruct.template import TemplateSpeaker
    from vlnav.sampler import prepare_data

    res: dict[str, Any] = {"machine": machine(), "episodes": episodes, "requests": requests}
    with tempfile.TemporaryDirectory() as tmp:
        per = max(1, episodes // 4)
        env = EnvConfig(
            data_dir=str(Path(tmp) / "data"),
            scenes=ScenesConfig(train=4, val_unseen=1, seed=7),
            episodes=EpisodesConfig(
                train_per_scene=per, val_seen_per_scene=1, val_unseen_per_scene=1
            ),
        )
        prepare_data(env, progress=progress)
        eps = load_episodes(env.episodes_path("train")).episodes[:episodes]
        cfg = InstructConfig()
        scenes = _Scenes(env, cfg)
        t0 = time.perf_counter()
        summaries = [
            scenes.summarizer(e.scene_id).summarize(e.reference_path, e.start_rotation) for e in eps
        ]
        res["summaries_per_s"] = len(eps) / (time.perf_counter() - t0)

        # ---------------------------------------------------------------- template
        reqs = [
            SpeakerRequest("instruction", item_seed(0, e.scene_id, e.episode_id, 0), summary=s)
            for e, s in zip(eps, summaries)
        ]
        t0 = time.perf_counter()
        TemplateSpeaker().generate(reqs)
        res["template_instructions_per_s"] = len(reqs) / (time.perf_counter() - t0)
        for key, with_traj in (
            ("template_pipeline", False),
            ("template_pipeline_trajectories", True),
        ):
            r = run_instruct(
                cfg,
                env,
                "train",
                Path(tmp) / key,
                limit=episodes,
                progress=False,
                trajectories=with_traj,
            )
            res[f"{key}_episodes_per_s"] = r.stats["items"] / r.stats["seconds"]
            res[f"{key}_accepted"] = r.stats["accepted"]

        # ------------------------------------------------------------------ openai
        book = PromptBook.load()
        items = [Item(i, e, s) for i, (e, s) in enumerate(zip(eps, summaries))]
        chat_reqs = [_request(it, 0, "instruction", cfg, book, items) for it in items]
        chat_reqs = (chat_reqs * (requests // len(chat_reqs) + 1))[:requests]
        res["prompt_chars_mean"] = sum(
            sum(len(m["content"]) for m in r.messages) for r in chat_reqs
        ) / len(chat_reqs)
        for latency in (0.0, 0.05):
            with _ServerProcess(latency) as url:
                for conc in (1, 8):
                    c = InstructConfig(speaker="openai:stub", concurrency=conc)
                    c.openai = OpenAIConfig(base_url=url, timeout=30)
                    sp = OpenAISpeaker("stub", c)
                    sp.generate(chat_reqs[:8])  # warm up: connections
                    t0 = time.perf_counter()
                    sp.generate(chat_reqs)
                    dt = time.perf_counter() - t0
                    tag = f"openai_latency{int(latency * 1000)}ms_c{conc}"
                    res[f"{tag}_replies_per_s"] = len(chat_reqs) / dt
                    res[f"{tag}_ms_per_reply"] = 1000 * dt / len(chat_reqs)
                    sp.close()
        with _ServerProcess(0.0) as url:
            c = InstructConfig(speaker="openai:stub", concurrency=8)
            c.openai = OpenAIConfig(base_url=url, timeout=30)
            for key in ("openai_pipeline_c8", "openai_pipeline_resumed_from_cache"):
                r = run_instruct(
                    c,
                    env,
                    "train",
                    Path(tmp) / "openai",
                    limit=episodes,
                    progress=False,
                    trajectories=False,
                )
                res[f"{key}_episodes_per_s"] = r.stats["items"] / r.stats["seconds"]
                res[f"{key}_cache_hits"] = r.stats["cache_hits"]
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=2) + "\n")
    return res


def summary(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"machine: {m['cpu']} ({m['cores']} cores), Python {m['python']}",
        f"path summaries:                          {res['summaries_per_s']:8.0f} /s",
        f"template speaker alone:                  {res['template_instructions_per_s']:8.0f} instructions/s",
        f"template run_instruct:                   {res['template_pipeline_episodes_per_s']:8.0f} episodes/s",
        f"  ... with text trajectories:            {res['template_pipeline_trajectories_episodes_per_s']:8.0f} episodes/s",
    ]
    for lat in (0, 50):
        for conc in (1, 8):
            tag = f"openai_latency{lat}ms_c{conc}"
            lines.append(
                f"openai, stub latency {lat:2d} ms, concurrency {conc}: "
                f"{res[tag + '_replies_per_s']:8.0f} replies/s ({res[tag + '_ms_per_reply']:.2f} ms/reply)"
            )
    lines += [
        f"openai run_instruct, concurrency 8:      {res['openai_pipeline_c8_episodes_per_s']:8.0f} episodes/s",
        f"  ... rerun from the cache (resume):     {res['openai_pipeline_resumed_from_cache_episodes_per_s']:8.0f} episodes/s",
        f"(mean prompt {res['prompt_chars_mean']:.0f} characters; {res['requests']} requests per figure)",
    ]
    return "\n".join(lines)
