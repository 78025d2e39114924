"""``vlnav instruct`` as a function: episodes in, synthetic instructions or trajectories out.

:func:`run_instruct` reads an R2R-CE episode file (or an env's split), summarises every
reference path from the house's SceneSpec, asks a speaker for an instruction (``mode
instruction``) or an imagined text trajectory (``mode imagine``), validates each reply and
asks again for the rejected ones, then writes, in ``out``:

``<name>.json.gz``
    (instruction mode) the episodes with ``instruction_text``, ``instruction_tokens`` and
    ``instruction_vocab`` filled in; an item's provenance (speaker, model, prompt hash, seed,
    attempt) is in its ``info["instruction_provenance"]`` (``info`` is the one free-form
    object that VLN-CE's episode loader accepts). Episodes whose every attempt was rejected
    are left out.
``<name>_trajectories.jsonl``
    (instruction mode) the simulator's text trajectory of each written episode with its new
    instruction (format: :mod:`vlnav.instruct.imagine`).
``<name>_imagined.jsonl``
    (imagine mode) the imagined text trajectories, with provenance.
``<stem>_rejected.jsonl``
    every rejected reply: episode, attempt, reasons, text (``<stem>`` is ``<name>``, or
    ``<name>_imagined`` in imagine mode).
``<stem>_summary.json``
    counts (accepted, dropped, rejected by reason), requests, cache hits, tokens, timing.
``cache/``
    every reply of a prompt-based speaker, as it arrives (a killed run resumes from it).

Generation runs in rounds: all pending items, then the rejected ones with the next attempt's
seed and prompt. Replies are validated in episode order after each round, so the outputs do
not depend on concurrency or on the order replies arrive, and a resumed run writes the same
files as an uninterrupted one.

Example:
    >>> from vlnav.config import EnvConfig
    >>> res = run_instruct(InstructConfig(speaker="template"), EnvConfig(), "train", "runs/instr")
    >>> res.files["episodes"]
    PosixPath('runs/instr/train.json.gz')
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlnav import VlnavError
from vlnav.config import EnvConfig
from vlnav.episodes import Episode, EpisodeSet, build_vocab, load_episodes, save_episodes, tokenize
from vlnav.instruct.cache import ResponseCache
from vlnav.instruct.config import InstructConfig
from vlnav.instruct.imagine import (
    TextTrajectory,
    ViewDescriber,
    simulate_text_trajectory,
    write_jsonl,
)
from vlnav.instruct.lexicon import Lexicon
from vlnav.instruct.prompts import PromptBook, prompt_hash
from vlnav.instruct.speakers import (
    CachedSpeaker,
    Speaker,
    SpeakerReply,
    SpeakerRequest,
    make_speaker,
)
from vlnav.instruct.summary import PathSummary, Summarizer
from vlnav.instruct.validate import Validator, clean_text
from vlnav.scenes.spec import SceneSpec

SPLITS = ("train", "val_seen", "val_unseen")


@dataclass
class Item:
    """One episode to write for, with what every speaker may be given about it."""

    index: int
    episode: Episode
    summary: PathSummary
    trajectory: TextTrajectory | None = None  # the simulator's text trajectory (imagine mode)


@dataclass
class InstructResult:
    out_dir: Path
    files: dict[str, Path]
    stats: dict[str, Any]
    episodes: list[Episode] = field(default_factory=list)  # instruction mode: those written
    trajectories: list[TextTrajectory] = field(default_factory=list)

    def report(self) -> str:
        """The summary printed by ``vlnav instruct``."""
        s = self.stats
        lines = [
            f"speaker {s['speaker']} ({s['model']}), mode {s['mode']}: {s['items']} episodes",
            f"accepted {s['accepted']}, dropped {s['dropped']} "
            f"(no valid reply in {s['max_attempts']} attempts)",
        ]
        rej = s["rejected_by_reason"]
        lines.append(
            f"rejected replies {s['rejected_replies']}"
            + (
                ": " + ", ".join(f"{k} {v}" for k, v in sorted(rej.items(), key=lambda kv: -kv[1]))
                if rej
                else ""
            )
        )
        t = s["tokens"]
        lines.append(
            f"requests {s['requests']} (cache hits {s['cache_hits']}), tokens used: "
            f"prompt {t['prompt']}, completion {t['completion']}"
        )
        lines.append(
            f"{s['seconds']:.1f} s in all, {s['generate_seconds']:.1f} s generating "
            f"({s['replies_per_second']:.1f} replies/s)"
        )
        lines += [f"wrote {p}" for p in self.files.values()]
        return "\n".join(lines)


def item_seed(seed: int, scene_id: str, episode_id: int | str, attempt: int) -> int:
    """A stable 31-bit seed per (run seed, episode, attempt) (fits servers' int32 seeds)."""
    blob = f"{seed}|{scene_id}|{episode_id}|{attempt}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


def resolve_episodes(
    env: EnvConfig, episodes: str | Path, progress: bool = True
) -> tuple[Path, str]:
    """(episode file, output name) for a file path or a split name of ``env``."""
    path = Path(episodes)
    if path.is_file():
        name = path.name
        for suffix in (".gz", ".json"):
            name = name.removesuffix(suffix)
        return path, name
    name = str(episodes)
    if name in SPLITS or ("/" not in name and not path.suffix):
        split_path = env.episodes_path(name)
        if not split_path.is_file() and env.scenes.procedural and name in SPLITS:
            from vlnav.sampler import prepare_data

            prepare_data(env, progress=progress)
        if split_path.is_file():
            return split_path, name
        raise VlnavError(f"no episodes for split {name!r}: {split_path} does not exist")
    raise VlnavError(
        f"episode file not found: {episodes} (give a .json.gz path or a split name: {', '.join(SPLITS)})"
    )


class _Scenes:
    """SceneSpecs, summarisers, grids and view describers per scene, made on first use."""

    def __init__(self, env: EnvConfig, config: InstructConfig) -> None:
        self.env, self.cfg = env, config
        self._specs: dict[str, SceneSpec] = {}
        self._summ: dict[str, Summarizer] = {}
        self._views: dict[str, ViewDescriber] = {}

    def spec(self, scene_id: str) -> SceneSpec:
        if scene_id not in self._specs:
            from vlnav.sim.builtin import find_scene

            self._specs[scene_id] = SceneSpec.load(find_scene(self.env.scenes_dir, scene_id))
        return self._specs[scene_id]

    def summarizer(self, scene_id: str) -> Summarizer:
        if scene_id not in self._summ:
            self._summ[scene_id] = Summarizer(self.spec(scene_id), self.cfg.summary)
        return self._summ[scene_id]

    def trajectory(self, ep: Episode, instruction: str | None = None) -> TextTrajectory:
        if ep.scene_id not in self._views:
            from vlnav.sim.navgrid import NavGrid

            spec = self.spec(ep.scene_id)
            grid = NavGrid.from_spec(spec, self.env.grid_cell, self.env.agent.radius)
            self._views[ep.scene_id] = ViewDescriber(spec, grid)
        vd = self._views[ep.scene_id]
        return simulate_text_trajectory(vd.spec, vd.grid, ep, instruction, describer=vd)


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="reply", disable=not enabled, dynamic_ncols=True)


def run_instruct(
    config: InstructConfig,
    env: EnvConfig,
    episodes: str | Path,
    out: str | Path,
    *,
    limit: int | None = None,
    speaker: Speaker | None = None,
    progress: bool = True,
    trajectories: bool = True,
) -> InstructResult:
    """Write synthetic instructions (or imagined trajectories) for an episode file.

    Args:
        config: the speaker, mode, seed, attempts and checks.
        env: the environment whose houses the episodes are in (and whose split names
            ``episodes`` may use).
        episodes: an R2R-CE ``.json.gz`` path or a split name of ``env``.
        out: the output folder (see the module doc for its files).
        limit: the first ``limit`` episodes only.
        speaker: a ready speaker (default: made from ``config.speaker``).
        trajectories: in instruction mode, also write the simulator's text trajectories.
    """
    t0 = time.perf_counter()
    out = Path(out)
    path, name = resolve_episodes(env, episodes, progress)
    source = load_episodes(path)
    eps = source.episodes[:limit] if limit is not None else source.episodes
    if not eps:
        raise VlnavError(f"{path}: no episodes to write instructions for")
    scenes = _Scenes(env, config)
    items = [
        Item(
            i,
            ep,
            scenes.summarizer(ep.scene_id).summarize(
                ep.reference_path, ep.start_rotation, ep.episode_id
            ),
        )
        for i, ep in enumerate(eps)
    ]
    mode = config.mode
    own_speaker = speaker is None
    speaker = speaker or make_speaker(config.speaker, config)
    try:
        if speaker.uses_prompts:
            speaker = CachedSpeaker(speaker, ResponseCache(config.cache_dir or out / "cache"))
        if mode == "imagine":
            for it in items:
                it.trajectory = scenes.trajectory(it.episode)
        book = PromptBook.load(config.prompts_dir or None) if speaker.uses_prompts else None
        lexicon = Lexicon.default().with_categories(
            {c for it in items for c in it.summary.room_categories}
        )
        validator = Validator(config.validate, lexicon)

        accepted: dict[int, tuple[str, TextTrajectory | None, dict[str, Any]]] = {}
        rejected_log: list[dict[str, Any]] = []
        reasons: Counter[str] = Counter()
        counts = {"requests": 0, "cache_hits": 0, "prompt": 0, "completion": 0}
        pending = list(items)
        gen_seconds = 0.0
        bar = _progress(len(items), progress, f"instruct {name}")
        for attempt in range(config.max_attempts):
            requests = [_request(it, attempt, mode, config, book, items) for it in pending]

            def on_done(i: int, reply: SpeakerReply) -> None:
                counts["requests"] += 1
                if reply.cached:
                    counts["cache_hits"] += 1
                else:
                    counts["prompt"] += reply.prompt_tokens
                    counts["completion"] += reply.completion_tokens
                bar.update(1)

            tg = time.perf_counter()
            replies = speaker.generate(requests, on_done)
            gen_seconds += time.perf_counter() - tg
            still = []
            for it, req, reply in zip(pending, requests, replies):
                prov = {
                    "speaker": speaker.name,
                    "model": speaker.model,
                    "prompt_hash": prompt_hash(req.messages)
                    if req.messages
                    else prompt_hash([{"role": "summary", "content": it.summary.to_prompt()}]),
                    "seed": req.seed,
                    "attempt": attempt,
                }
                if mode == "imagine":
                    real = None if speaker.uses_prompts else it.summary
                    traj, why = validator.check_imagined(reply.text, real)
                    text = traj.instruction if traj else ""
                else:
                    traj, text = None, clean_text(reply.text)
                    why = validator.check(text, it.summary)
                if why:
                    reasons.update(why)
                    rejected_log.append(
                        {
                            "episode_id": it.episode.episode_id,
                            "attempt": attempt,
                            "reasons": why,
                            "text": reply.text,
                        }
                    )
                    still.append(it)
                else:
                    validator.accept(text)
                    accepted[it.index] = (text, traj, prov)
            pending = still
            bar.set_postfix(accepted=len(accepted), rejected=sum(reasons.values()))
            if not pending:
                break
            bar.total += len(pending)
            bar.refresh()
        bar.close()
    finally:
        if own_speaker:
            speaker.close()

    stem = name if mode == "instruction" else f"{name}_imagined"
    files: dict[str, Path] = {}
    written: list[Episode] = []
    trajs: list[TextTrajectory] = []
    ordered = [(it, accepted[it.index]) for it in items if it.index in accepted]
    if mode == "instruction":
        vocab = build_vocab([text for _, (text, _, _) in ordered])
        for it, (text, _, prov) in ordered:
            written.append(
                dataclasses.replace(
                    it.episode,
                    instruction_text=text,
                    instruction_tokens=tokenize(text, vocab),
                    info={**it.episode.info, "instruction_provenance": prov},
                )
            )
        files["episodes"] = save_episodes(
            out / f"{name}.json.gz", EpisodeSet(written, vocab, dict(source.extra))
        )
        if trajectories:
            for ep in written:
                t = scenes.trajectory(ep, ep.instruction_text)
                t.provenance = ep.info["instruction_provenance"]
                trajs.append(t)
            files["trajectories"] = write_jsonl(out / f"{name}_trajectories.jsonl", trajs)
    else:
        for it, (_, traj, prov) in ordered:
            assert traj is not None
            traj.provenance = prov
            if not speaker.uses_prompts:  # the template keeps the simulator's steps
                traj.source, traj.episode_id = "simulator", it.episode.episode_id
                traj.scene_id = it.summary.scene_id
            trajs.append(traj)
        files["imagined"] = write_jsonl(out / f"{stem}.jsonl", trajs)
    files["rejected"] = _write_lines(out / f"{stem}_rejected.jsonl", rejected_log)

    seconds = time.perf_counter() - t0
    stats = {
        "episodes_file": str(path),
        "speaker": speaker.name,
        "model": speaker.model,
        "mode": mode,
        "seed": config.seed,
        "items": len(items),
        "accepted": len(accepted),
        "dropped": len(items) - len(accepted),
        "max_attempts": config.max_attempts,
        "rejected_replies": len(rejected_log),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "requests": counts["requests"],
        "cache_hits": counts["cache_hits"],
        "tokens": {"prompt": counts["prompt"], "completion": counts["completion"]},
        "seconds": round(seconds, 3),
        "generate_seconds": round(gen_seconds, 3),
        "replies_per_second": round(counts["requests"] / gen_seconds, 2)
        if gen_seconds > 0
        else 0.0,
    }
    summary_path = out / f"{stem}_summary.json"
    summary_path.write_text(
        json.dumps({**stats, "files": {k: str(v) for k, v in files.items()}}, indent=2) + "\n"
    )
    files["summary"] = summary_path
    return InstructResult(out, files, stats, written, trajs)


def _request(
    it: Item,
    attempt: int,
    mode: str,
    config: InstructConfig,
    book: PromptBook | None,
    items: list[Item],
) -> SpeakerRequest:
    seed = item_seed(config.seed, it.episode.scene_id, it.episode.episode_id, attempt)
    messages: list[dict[str, str]] = []
    if book is not None and mode == "instruction":
        messages = book.instruction_messages(it.summary, seed, config.few_shot)
    elif book is not None:
        pool = [o.trajectory for o in items if o is not it and o.trajectory] or [it.trajectory]
        rng = random.Random(seed)
        examples = rng.sample(pool, min(config.imagine_examples, len(pool)))
        messages = book.imagine_messages(
            examples, it.summary.rooms[0], it.summary.rooms[-1], len(it.trajectory.steps)
        )
    return SpeakerRequest(mode, seed, messages, it.summary, it.trajectory)


def _write_lines(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)
    return path
