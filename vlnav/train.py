"""``vlnav train configs/<name>.yaml``: imitation then DAgger for the small-LM policy.

Stages, each resumable from what it wrote to the run folder:

1. expert data: the expert (the candidate that most reduces the geodesic distance to the
   goal) walks the training episodes at the decision level; every decision is recorded as
   text (``data/expert.jsonl``, appended per episode);
2. tokenizer: a word-level tokenizer trained on that corpus (``tokenizer/``);
3. imitation: teacher forcing, one whole episode per sequence, loss at every decision;
4. DAgger rounds: roll out the current policy (mixed with the expert with probability
   ``beta``), label every visited decision with the expert, aggregate, train on;
5. the final checkpoint (``policy/``) that ``vlnav eval --policy`` loads.

Training state (weights, optimizer, step, RNG) is saved every ``checkpoint_every`` steps to
``state/``; after a kill the same command resumes from it, and batches are drawn from an
RNG seeded by (seed, step), so a resumed run ends at the same weights as an uninterrupted one.
The loop runs under ``accelerate``, so ``accelerate launch -m vlnav.cli train ...`` spreads it
over GPUs or nodes; tensorboard logs go to ``tb/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlnav import VlnavError
from vlnav.config import (
    ConfigError,
    EnvConfig,
    check_choice,
    check_range,
    load_config,
)
from vlnav.perception.candidates import WAYPOINT_MODES
from vlnav.policy.model import PolicyConfig


@dataclass
class DataConfig:
    split: str = "train"
    episodes_file: str | None = None  # R2R-CE file with instructions (e.g. from vlnav instruct)
    max_episodes: int = 600
    imagined: str | None = (
        None  # JSONL of imagined text trajectories (vlnav instruct --mode imagine)
    )
    # fraction of training sequences whose object, room and colour words are permuted
    # (vlnav/policy/augment.py): the answers stay right, memorised houses stop helping
    augment: float = 0.0
    # instructions per training path: the episode's own plus paraphrases - 1 more from the
    # env's speaker with other seeds (seed + 1, seed + 2, ...), each a training sequence
    # over the same expert decisions (speaker augmentation; DAgger data too)
    paraphrases: int = 1

    def __post_init__(self) -> None:
        check_range("max_episodes", self.max_episodes, 1, 10_000_000)
        check_range("augment", self.augment, 0.0, 1.0)
        check_range("paraphrases", self.paraphrases, 1, 100)


@dataclass
class OptimConfig:
    steps: int = 400  # imitation steps
    batch_size: int = 8  # episodes per step
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 50
    grad_clip: float = 1.0
    lm_loss: float = 0.0  # weight of the next-token loss on the whole sequence (0: off)
    # decision targets: "best" = the expert's label; "good" = any label whose waypoint is
    # within ``good_within`` metres (geodesic) of the best one's (neighbouring views are
    # often as good); recorded when the data is collected
    answers: str = "best"
    good_within: float = 0.5
    # the expert stops (Stop its only good answer) within this many metres (geodesic) of the
    # goal; farther in, it walks on while a move gets 0.5 m closer. Recorded when the data is
    # collected. Larger: shorter expert paths, the policy learns to stop earlier (SPL)
    expert_stop: float = 1.0
    # weight of the expected-regret term: the policy's probabilities times each answer's
    # regret (metres the answer loses against the expert's, vlnav.policy.expert), so a step
    # the wrong way costs more than a near miss; 0: off
    regret: float = 0.0
    # the stop head (policy.stop_head): weight of its loss, and the distance to the goal
    # (metres, geodesic) within which its target is "stop"
    stop_loss: float = 1.0
    stop_within: float = 2.5
    # exponential moving average of the weights (decay per step; 0: off). The DAgger
    # rollouts and the saved policy use the averaged weights, training goes on with the raw
    # ones; saved with the training state, so a resumed run averages what an uninterrupted
    # one does
    ema: float = 0.0
    # Stop counts as a good answer within this many metres (geodesic) of the goal, wherever
    # the expert would still move on; null: as collected (success radius less 1 m, i.e. 2 m).
    # Applied when the data is read, from each decision's recorded goal distance
    stop_good_within: float | None = None

    def __post_init__(self) -> None:
        check_range("ema", self.ema, 0.0, 0.9999)
        if self.stop_good_within is not None:
            check_range("stop_good_within", self.stop_good_within, 0.0, 100.0)
        check_range("stop_loss", self.stop_loss, 0.0, 100.0)
        check_range("stop_within", self.stop_within, 0.0, 100.0)
        check_choice("answers", self.answers, ("best", "good"))
        check_range("steps", self.steps, 0, 10_000_000)
        check_range("batch_size", self.batch_size, 1, 4096)
        check_range("lr", self.lr, 1e-7, 1.0)
        check_range("good_within", self.good_within, 0.0, 10.0)
        check_range("expert_stop", self.expert_stop, 0.0, 100.0)
        check_range("regret", self.regret, 0.0, 100.0)


@dataclass
class DaggerConfig:
    rounds: int = 2
    episodes: int = 200  # rollouts per round
    beta: float = 0.5  # probability of executing the expert's choice in round 1 (halved each round)
    steps: int = 200  # training steps after each round

    def __post_init__(self) -> None:
        check_range("rounds", self.rounds, 0, 100)
        check_range("beta", self.beta, 0.0, 1.0)


@dataclass
class CaptionerConfig:
    name: str = "semantic"
    kwargs: dict[str, Any] = field(default_factory=lambda: {"max_objects": 2})

    def __post_init__(self) -> None:
        from vlnav.perception.base import check_captioner

        try:
            check_captioner(self.name, self.kwargs or {})
        except ConfigError as e:  # names the option: prefix where it sits
            raise ConfigError(f"kwargs.{e}") from None


@dataclass
class TrainConfig:
    name: str = "langnav-small"
    env: str = "envs/procedural.yaml"
    env_overrides: list[str] = field(default_factory=list)
    out: str = "runs/langnav-small"
    seed: int = 0
    max_decisions: int = 15
    # candidates' waypoints: "path" moves that follow the shortest path to a point in the
    # view, or "straight" walks along it (vlnav/perception/candidates.py)
    waypoints: str = "path"
    checkpoint_every: int = 100
    log_every: int = 20
    threads: int = 0  # torch threads (0: torch's default)
    collect_workers: int = 1  # processes walking the expert episodes (the file is the same)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    features: str | None = None  # visual feature encoder for fusion, e.g. "learned:<ckpt>"
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    dagger: DaggerConfig = field(default_factory=DaggerConfig)

    def __post_init__(self) -> None:
        check_range("max_decisions", self.max_decisions, 1, 200)
        check_choice("waypoints", self.waypoints, WAYPOINT_MODES)
        check_range("checkpoint_every", self.checkpoint_every, 1, 10_000_000)
        check_range("collect_workers", self.collect_workers, 1, 256)
        if self.policy.fusion != "none" and not self.features:
            raise ConfigError("policy.fusion needs features: <encoder> (e.g. learned:<checkpoint>)")
        if self.data.augment and self.policy.fusion != "none":
            raise ConfigError(
                "data.augment needs policy.fusion: none (a permuted word would no longer "
                "match its view's visual features)"
            )

    def env_config(self) -> EnvConfig:
        return load_config(EnvConfig, self.env, self.env_overrides)


def load_train_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    return load_config(TrainConfig, path, overrides)


# --------------------------------------------------------------------------- data
def _decisions_to_json(instruction: str, episode_id: Any, decisions: list) -> dict[str, Any]:
    return {
        "episode_id": str(episode_id),
        "instruction": instruction,
        "decisions": [
            {
                "obs": d.obs.to_dict(),
                "label": d.label,
                "features": None if d.features is None else np.asarray(d.features).tolist(),
                "good": d.good,
                "regret": d.regret,
                "distance": d.distance,
            }
            for d in decisions
        ],
    }


def _json_to_decisions(item: dict[str, Any]) -> tuple[str, list]:
    from vlnav.perception.candidates import TextObservation
    from vlnav.policy.prompt import Decision

    return item["instruction"], [
        Decision(
            TextObservation.from_dict(d["obs"]),
            d["label"],
            None if d.get("features") is None else np.asarray(d["features"], np.float32),
            d.get("good"),
            d.get("regret"),
            d.get("distance"),
        )
        for d in item["decisions"]
    ]


def _read_expert(
    path: Path,
    distances: bool = False,
    paraphrases: dict[str, list[str]] | None = None,
    stop_good_within: float | None = None,
) -> list[tuple[str, list]]:
    """Expert data (imitation or a DAgger round); ``distances``: every decision must carry
    its goal distance (the stop head's target). ``paraphrases`` (episode id -> other
    instructions): each adds a sequence over the same decisions. ``stop_good_within``: Stop
    is a good answer exactly where the goal is within that many metres (or the expert
    stops), instead of as collected."""
    corpus = []
    for r in read_jsonl(path):
        instr, ds = _json_to_decisions(r)
        corpus.append((instr, ds))
        corpus += [(alt, ds) for alt in (paraphrases or {}).get(str(r["episode_id"]), [])]
    need = distances or stop_good_within is not None
    if need and any(d.distance is None for _, ds in corpus for d in ds):
        what = "policy.stop_head" if distances else "optim.stop_good_within"
        raise VlnavError(
            f"{path} has no goal distances for {what} (collected by an older vlnav): delete "
            "it to collect again"
        )
    if stop_good_within is not None:
        from vlnav.policy.prompt import STOP_LABEL

        for d in {id(d): d for _, ds in corpus for d in ds}.values():
            if d.label == STOP_LABEL or d.good is None:
                continue
            good = [g for g in d.good if g != STOP_LABEL]
            d.good = good + [STOP_LABEL] * (d.distance <= stop_good_within)
    return corpus


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    from vlnav.evaluate import read_records

    return read_records(path)


class Trainer:
    _ema: _EMA | None = None  # set by run() when optim.ema > 0

    def __init__(self, cfg: TrainConfig, progress: bool = True, env: EnvConfig | None = None):
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.env = env or cfg.env_config()
        if cfg.threads:
            import torch

            torch.set_num_threads(cfg.threads)
        (self.out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")

    # ------------------------------------------------------------------ episodes
    def episodes(self) -> list:
        from vlnav.episodes import load_episodes
        from vlnav.sampler import prepare_data

        if self.env.scenes.procedural:
            prepare_data(self.env, progress=self.progress)
        path = self.cfg.data.episodes_file or self.env.episodes_path(self.cfg.data.split)
        return load_episodes(path).episodes[: self.cfg.data.max_episodes]

    def collect(
        self,
        path: Path,
        episodes: list,
        choose_factory=None,
        desc: str = "",
        workers: int = 1,
    ) -> None:
        """Walk ``episodes`` at the decision level, appending expert-labelled decisions.

        With ``workers > 1`` (expert data only: ``choose_factory`` None) the episodes are
        walked by that many ``spawn``-ed processes; the file is still written in episode
        order, so it is the same file one process writes, and a killed run resumes."""
        from tqdm import tqdm

        path.parent.mkdir(parents=True, exist_ok=True)
        done = {r["episode_id"] for r in read_jsonl(path)}
        todo = [e for e in episodes if str(e.episode_id) not in done]
        if not todo:
            return
        success = []
        # the bar closes (on an error too) before anything else is printed
        with (
            tqdm(total=len(todo), desc=desc, disable=not self.progress, mininterval=1.0) as bar,
            open(path, "a") as fh,
        ):

            def write(item: dict[str, Any]) -> None:
                success.append(item["SR"])
                fh.write(json.dumps(item) + "\n")
                fh.flush()
                bar.update(1)

            if workers > 1 and choose_factory is None and len(todo) > 1:
                import multiprocessing as mp

                size = max(1, min(10, len(todo) // (4 * workers)))
                chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
                ctx = mp.get_context("spawn")
                init = (self.cfg, self.env)  # each worker builds its own _Collector
                with ctx.Pool(workers, _init_collector, init) as pool:
                    for items in pool.imap(_collect_chunk, chunks):  # in order
                        for item in items:
                            write(item)
            else:
                walker = _Collector(self.cfg, self.env, choose_factory)
                try:
                    for ep in todo:
                        write(walker.rollout(ep))
                finally:
                    walker.close()
        print(f"[train] {desc}: {len(success)} rollouts, SR {np.mean(success):.3f}")

    # ------------------------------------------------------------------ run
    def run(self) -> Path:
        import torch

        cfg = self.cfg
        t0 = time.time()
        data_dir = self.out / "data"
        data_dir.mkdir(exist_ok=True)
        episodes = self.episodes()
        print(f"[train] {len(episodes)} training episodes; run folder {self.out}")
        # under `accelerate launch`, the main process collects; the others then find it done
        with _main_process_first():
            self._check_labels(data_dir)
            self.collect(
                data_dir / "expert.jsonl",
                episodes,
                desc="expert data",
                workers=cfg.collect_workers,
            )
        with _main_process_first():
            para = self.paraphrases(data_dir, episodes)
        sgw = cfg.optim.stop_good_within
        corpus = _read_expert(data_dir / "expert.jsonl", cfg.policy.stop_head, para, sgw)
        if cfg.data.imagined:
            corpus += load_imagined(cfg.data.imagined)
        policy = self._policy(corpus)
        self._ema = _EMA(policy, cfg.optim.ema) if cfg.optim.ema > 0 else None
        stages = [("imitation", cfg.optim.steps, None)]
        for r in range(1, cfg.dagger.rounds + 1):
            stages.append((f"dagger{r}", cfg.dagger.steps, r))
        step0 = 0
        for name, steps, rnd in stages:
            if rnd is not None:
                path = data_dir / f"dagger{rnd}.jsonl"
                beta = cfg.dagger.beta / (2 ** (rnd - 1))
                sub = _subset(episodes, cfg.dagger.episodes, cfg.seed + rnd)
                policy.eval()
                roll = self._ema.averaged(policy) if self._ema else policy
                with _main_process_first():
                    self.collect(path, sub, self._mixture(roll, beta), desc=f"dagger {rnd}")
                corpus += _read_expert(path, cfg.policy.stop_head, para, sgw)
            self._train(policy, corpus, name, step0, step0 + steps)
            step0 += steps
        final = self.out / "policy"
        if self._ema is not None:
            policy = self._ema.averaged(policy)
        with _main_process_first() as main:
            if main:
                policy.save(final, extra=self._meta())
        print(f"[train] done in {time.time() - t0:.0f} s; checkpoint {final}")
        _ = torch
        return final

    def paraphrases(self, data_dir: Path, episodes: list) -> dict[str, list[str]]:
        """Episode id -> its other instructions (``data.paraphrases`` - 1 of them), written
        for ``episodes`` (the ones trained on; a speaker is asked about nothing else) by the
        env's speaker with seeds ``episodes.seed + 1, + 2, ...`` (deterministic;
        ``<data_dir>/paraphrases-<k>/``)."""
        k = self.cfg.data.paraphrases
        if k <= 1:
            return {}
        if self.env.episodes.speaker == "route":
            raise ConfigError(
                "data.paraphrases needs a speaker that writes instructions (the env's "
                "episodes.speaker is 'route', one fixed description per path)"
            )
        from vlnav.episodes import EpisodeSet, load_episodes, save_episodes
        from vlnav.instruct.config import InstructConfig
        from vlnav.instruct.pipeline import run_instruct

        src = save_episodes(data_dir / "paraphrase-source.json.gz", EpisodeSet(list(episodes)))
        out: dict[str, list[str]] = {}
        for j in range(1, k):
            speaker = InstructConfig(
                speaker=self.env.episodes.speaker, seed=self.env.episodes.seed + j
            )
            res = run_instruct(
                speaker, self.env, src, data_dir / f"paraphrases-{j}", progress=False,
                trajectories=False,
            )  # fmt: skip
            for ep in load_episodes(res.files["episodes"]).episodes:
                out.setdefault(str(ep.episode_id), []).append(ep.instruction_text)
        print(f"[train] {k - 1} more instructions for each of the {len(out)} training episodes")
        return out

    def _labels(self) -> dict[str, Any]:
        """The settings the collected data (observations and the expert's labels) depend on."""
        cfg = self.cfg
        return {
            "env": self.env.name,
            "captioner": dataclasses.asdict(cfg.captioner),
            "features": cfg.features,
            "waypoints": cfg.waypoints,
            "max_decisions": cfg.max_decisions,
            "good_within": cfg.optim.good_within,
            "expert_stop": cfg.optim.expert_stop,
        }

    def _check_labels(self, data_dir: Path) -> None:
        """A run folder's data is reused on resume: refuse it when it was collected with
        other settings (``data/labels.json``, written with the first data; folders from
        before it are not checked)."""
        path, want = data_dir / "labels.json", self._labels()
        if path.is_file():
            have = json.loads(path.read_text())
            for k, v in have.items():
                if k in want and json.dumps(v, sort_keys=True) != json.dumps(
                    want[k], sort_keys=True
                ):
                    raise ConfigError(
                        f"{data_dir} was collected with {k}={v!r} but the config says "
                        f"{want[k]!r}: train into another out folder, or delete {data_dir}"
                    )
        elif not any(data_dir.glob("*.jsonl")):
            path.write_text(json.dumps(want, indent=2) + "\n")

    def _meta(self) -> dict[str, Any]:
        return {
            "name": self.cfg.name,
            "captioner": dataclasses.asdict(self.cfg.captioner),
            "features": {"encoder": self.cfg.features} if self.cfg.features else None,
            "max_decisions": self.cfg.max_decisions,
            "waypoints": self.cfg.waypoints,
            "env": self.env.name,
        }

    def _policy(self, corpus: list):
        from vlnav.policy.model import NavPolicy, build_tokenizer
        from vlnav.policy.prompt import caption_words

        tok_dir = self.out / "tokenizer"
        if (tok_dir / "tokenizer.json").is_file():
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tok_dir)
            if not self.cfg.policy.pretrained:
                check_tokenizer(tok, self.cfg.policy.prompt, tok_dir)
        else:
            texts = []
            for instr, ds in corpus:
                texts.append(instr)
                for d in ds:
                    texts += [" ".join(caption_words(c.caption)) for c in d.obs.candidates]
                    texts += [c.direction for c in d.obs.candidates]
            tok = build_tokenizer(texts, _asset_words())
            tok.save_pretrained(tok_dir)
        pcfg = dataclasses.replace(self.cfg.policy)
        if self.cfg.features:
            pcfg.feature_dim = _features(self.cfg).dim
        import torch

        torch.manual_seed(self.cfg.seed)
        return NavPolicy.create(pcfg, tok)

    def _mixture(self, policy, beta: float):
        from vlnav.policy.agent import EpisodeContext
        from vlnav.policy.prompt import LABELS, STOP_LABEL

        def factory(episode, seed):
            ctx = EpisodeContext(policy, episode.instruction_text)
            rng = np.random.default_rng([self.cfg.seed, seed])

            def choose(obs, decision):
                logp, _ = ctx.scores(decision)
                k = int(np.argmax(logp))
                mine = STOP_LABEL if k == len(LABELS) else LABELS[k]
                label = decision.label if rng.random() < beta else mine
                ctx.commit(label)
                return label

            return choose

        return factory

    def _train(self, policy, corpus: list, stage: str, start: int, end: int) -> None:
        import torch
        from accelerate import Accelerator
        from tqdm import tqdm

        from vlnav.policy.model import collate

        cfg = self.cfg
        state_dir = self.out / "state"
        acc = Accelerator(cpu=not torch.cuda.is_available())
        items = [policy.episode_tensors(instr, ds) for instr, ds in corpus if ds]
        opt = torch.optim.AdamW(
            policy.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
        )
        total = cfg.optim.steps + cfg.dagger.rounds * cfg.dagger.steps
        step = start
        ema = self._ema
        saved = _load_state(state_dir)
        if saved is not None and ema is not None and saved["step"] >= start:
            if "ema" not in saved:
                raise ConfigError(
                    f"{state_dir} was saved without optim.ema: train into another out folder, "
                    f"or delete {state_dir} to restart the training"
                )
            ema.load_state_dict(saved["ema"])
        if saved is not None and saved["step"] >= end:
            policy.load_state_dict(saved["model"])
            return  # this stage finished before a restart
        if saved is not None and saved["step"] > start:
            policy.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optim"])
            step = saved["step"]
            print(f"[train] resumed {stage} at step {step}")
        elif saved is not None and saved["step"] == start and start > 0:
            policy.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optim"])
        if cfg.optim.batch_size % acc.num_processes:
            raise ConfigError(
                f"optim.batch_size={cfg.optim.batch_size} must be a multiple of the "
                f"{acc.num_processes} training processes (each takes an equal share)"
            )
        model, opt = acc.prepare(policy, opt)
        if acc.is_main_process and acc.num_processes > 1:
            print(f"[train] {stage}: {acc.num_processes} processes ({acc.device})")
        writer = _tensorboard(self.out / "tb") if acc.is_main_process else None
        bar = tqdm(
            total=end - start,
            initial=step - start,
            desc=stage,
            disable=not self.progress or not acc.is_main_process,
            mininterval=1.0,
        )
        permuter = None
        if cfg.data.augment > 0:
            from vlnav.policy.augment import WordPermuter

            permuter = WordPermuter(policy.tokenizer)
        model.train()
        tokens, t_log = 0, time.time()
        while step < end:
            lr = _lr(step, cfg.optim.lr, cfg.optim.warmup, total)
            for g in opt.param_groups:
                g["lr"] = lr
            rng = np.random.default_rng([cfg.seed, step])
            idx = rng.choice(len(items), size=min(cfg.optim.batch_size, len(items)), replace=False)
            shard = idx[acc.process_index :: acc.num_processes]
            # one episode per forward (no padding: the causal attention kernel stays fast);
            # gradients are accumulated, each episode weighted by its share of the batch's
            # decisions; DDP averages over the P processes, hence the factor P, so that P
            # processes take exactly the step one process takes
            n_all = sum(len(items[i]["ans"]) for i in idx)
            n_dec = sum(len(items[i]["ans"]) for i in shard)
            # which episodes are augmented, and how, depends on (seed, step, episode) only,
            # so that P processes and a resumed run draw what one uninterrupted process draws
            if permuter is not None:
                draws = np.random.default_rng([cfg.seed, step, 1]).random(len(idx))
                augmented = (draws < cfg.data.augment)[acc.process_index :: acc.num_processes]
            opt.zero_grad(set_to_none=True)
            loss_sum, acc_sum = 0.0, 0.0
            for j, i in enumerate(shard):
                batch = collate([items[i]], policy.tokenizer.pad_token_id)
                if permuter is not None and augmented[j]:
                    rng_i = np.random.default_rng([cfg.seed, step, 2, int(i)])
                    table = torch.from_numpy(permuter.table(rng_i))
                    batch["input_ids"] = table[batch["input_ids"]]
                batch = {k: v.to(acc.device) for k, v in batch.items()}
                # under DDP, gradients are all-reduced once, after the last micro-batch
                sync = j == len(shard) - 1 or acc.num_processes == 1
                with contextlib.nullcontext() if sync else acc.no_sync(model):
                    loss, accuracy = model(
                        batch,
                        cfg.optim.lm_loss,
                        cfg.optim.answers,
                        cfg.optim.regret,
                        cfg.optim.stop_loss,
                        cfg.optim.stop_within,
                    )
                    acc.backward(loss * (len(items[i]["ans"]) * acc.num_processes / n_all))
                w = len(items[i]["ans"]) / n_dec  # this process's share, for the log
                loss_sum += loss.item() * w
                acc_sum += accuracy.item() * w
                tokens += len(items[i]["input_ids"])
            if cfg.optim.grad_clip:
                acc.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            opt.step()
            if ema is not None:
                ema.update(policy)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.3f}", acc=f"{acc_sum:.2f}", refresh=False)
            if writer is not None and step % cfg.log_every == 0:
                dt = time.time() - t_log
                writer.add_scalar("train/loss", loss_sum, step)
                writer.add_scalar("train/decision_accuracy", acc_sum, step)
                writer.add_scalar("train/lr", lr, step)
                writer.add_scalar("train/tokens_per_s", tokens / max(dt, 1e-9), step)
                tokens, t_log = 0, time.time()
            if (step % cfg.checkpoint_every == 0 or step == end) and acc.is_main_process:
                _save_state(state_dir, acc.unwrap_model(model), opt, step, ema)
        bar.close()
        if writer is not None:
            writer.close()
        model.eval()


def _features(cfg: TrainConfig):
    if not cfg.features:
        return None
    from vlnav.policy.features import PanoramaFeatures

    return PanoramaFeatures.from_spec({"encoder": cfg.features})


class _Collector:
    """One process's simulator, captioner and decision agent for collecting episodes."""

    def __init__(self, cfg: TrainConfig, env: EnvConfig, choose_factory=None) -> None:
        import torch

        from vlnav.perception.base import make_captioner
        from vlnav.perception.cache import ObservationCache
        from vlnav.policy.agent import DecisionAgent
        from vlnav.sim.base import make_simulator

        self.env, self.choose_factory = env, choose_factory
        self.sim = make_simulator(env.backend, env, sensors=())
        self.cache = ObservationCache(Path(cfg.out) / "obs_cache.sqlite")
        self.agent = DecisionAgent(
            make_captioner(cfg.captioner.name, **cfg.captioner.kwargs),
            choose=None,
            record=True,
            max_decisions=cfg.max_decisions,
            success_radius=env.episodes.success_radius,
            features=_features(cfg),
            cache=self.cache,
            turn_angle=env.agent.turn_angle,
            forward_step=env.agent.forward_step,
            waypoints=cfg.waypoints,
            good_within=cfg.optim.good_within,
            expert_stop=cfg.optim.expert_stop,
        )
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small incremental forwards: more threads only contend

    def rollout(self, ep) -> dict[str, Any]:
        from vlnav.evaluate import run_episode
        from vlnav.metrics import compute_metrics

        env = self.env
        seed = int(ep.episode_id) if str(ep.episode_id).isdigit() else 0
        if self.choose_factory is not None:
            self.agent.choose = self.choose_factory(ep, seed)
        rec = run_episode(
            self.sim,
            ep,
            self.agent,
            env.agent.max_steps,
            seed=seed,
            success_radius=env.episodes.success_radius,
        )
        item = _decisions_to_json(ep.instruction_text, ep.episode_id, self.agent.decisions)
        item["SR"] = compute_metrics(rec)["SR"]
        return item

    def close(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        self.sim.close()
        self.cache.close()


_COLLECTOR: dict[str, _Collector] = {}


def _init_collector(cfg: TrainConfig, env: EnvConfig) -> None:
    # a pool whose initializer raises starts new workers for ever: keep the error, and raise
    # it from the first chunk, which hands it to the parent
    try:
        _COLLECTOR["c"] = _Collector(cfg, env)
    except Exception as e:
        _COLLECTOR["error"] = e


def _collect_chunk(episodes: list) -> list[dict[str, Any]]:
    if "error" in _COLLECTOR:
        raise _COLLECTOR["error"]
    return [_COLLECTOR["c"].rollout(ep) for ep in episodes]


@contextlib.contextmanager
def _main_process_first():
    """Run the body on the main process first, then on the others (which find its files);
    yields whether this is the main process. A no-op outside ``accelerate launch``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield True
        return
    import torch
    from accelerate import PartialState

    # cpu=True makes a CPU-only process group (gloo) distributed, as Accelerator(cpu=...) does
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():
        yield state.is_main_process


def _lr(step: int, base: float, warmup: int, total: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _subset(episodes: list, n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(episodes))[: min(n, len(episodes))]
    return [episodes[i] for i in sorted(idx)]


class _EMA:
    """An exponential moving average of a model's floating-point weights (float32 copies).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so the first
    steps' weights (far from the end ones) fade fast."""

    def __init__(self, model, decay: float) -> None:
        self.decay, self.updates = float(decay), 0
        self.shadow = {
            k: v.detach().float().clone()
            for k, v in model.state_dict().items()
            if v.is_floating_point()
        }

    def update(self, model) -> None:
        import torch

        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if k in self.shadow:
                    if self.shadow[k].device != v.device:  # the model moved (to a GPU)
                        self.shadow[k] = self.shadow[k].to(v.device)
                    self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1.0 - d)

    def averaged(self, model):
        """A copy of ``model`` holding the averaged weights (``model`` is left as it is)."""
        import copy

        out = copy.deepcopy(model)
        state = out.state_dict()
        for k, v in self.shadow.items():
            state[k].copy_(v.to(state[k].dtype))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.shadow = {k: v.float().clone() for k, v in state["shadow"].items()}


def _save_state(folder: Path, model, opt, step: int, ema: _EMA | None = None) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "state.pt.tmp"
    state = {"model": model.state_dict(), "optim": opt.state_dict(), "step": step}
    if ema is not None:
        state["ema"] = ema.state_dict()
    torch.save(state, tmp)
    os.replace(tmp, folder / "state.pt")


def _load_state(folder: Path) -> dict[str, Any] | None:
    import torch

    path = folder / "state.pt"
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise VlnavError(
            f"training state {path} is corrupt ({type(e).__name__}); delete it to restart the run"
        ) from None


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def check_tokenizer(tok: Any, prompt: str, where: Path) -> None:
    """A run folder's saved tokenizer must know the words its prompt style writes: one from
    before the ``terse`` prompt lacks its joined names and would read them as <unk>."""
    if prompt != "terse":
        return
    vocab = tok.get_vocab()
    missing = [w for w in _asset_words() if "_" in w and w not in vocab]
    if missing:
        raise VlnavError(
            f"{where} has no '{missing[0]}' (and {len(missing) - 1} more of the terse prompt's"
            " names): it was built for another prompt; train into another out folder"
        )


def _asset_words() -> list[str]:
    """Every object category, colour and room type the generator can produce."""
    import yaml

    from vlnav.policy.prompt import joined, words

    root = Path(__file__).resolve().parents[1] / "assets"
    out: set[str] = set()
    for name in ("objects.yaml", "rooms.yaml"):
        p = root / name
        if p.is_file():
            data = yaml.safe_load(p.read_text())
            out.update(words(json.dumps(data)))
            for key in ("colours", "objects", "room_types"):  # the terse prompt's names
                out.update(joined(k) for k in (data or {}).get(key) or ())
    for k in range(1, 12):
        out.update(words(f"{30 * k} degree left right front back"))
    out.update(str(k) for k in range(0, 31))  # distances in whole metres
    from vlnav.policy.prompt import mark_words

    out.update(mark_words())  # the matched prompt's landmark marks
    out.update(["stop", "here", "visited", "passed", "none", "turn"])  # Stop; marks; progress
    return sorted(out)


def load_imagined(path: str | Path) -> list:
    """Imagined text trajectories (``vlnav instruct --mode imagine``) as training decisions."""
    from vlnav.perception.base import Caption
    from vlnav.perception.candidates import Candidate, TextObservation
    from vlnav.policy.prompt import LABELS, STOP_LABEL, Decision

    out = []
    for item in read_jsonl(Path(path)):
        decisions = []
        for st in item.get("steps", []):
            cands = []
            for c in st.get("candidates", []):
                k = _direction_index(c["direction"])
                if k is None:
                    continue
                cands.append(Candidate(k, 30.0 * k, 0.0, [0, 0, 0], 1.0, Caption(c["description"])))
            act = st.get("action")
            if act == "stop" or act is None:
                label = STOP_LABEL
            else:
                k = _direction_index(st["candidates"][int(act)]["direction"])
                label = LABELS[k] if k is not None else STOP_LABEL
            decisions.append(Decision(TextObservation("imagined", [0, 0, 0], 0.0, cands), label))
        if decisions:
            out.append((item["instruction"], decisions))
    return out


def _direction_index(direction: str) -> int | None:
    d = direction.strip().lower()
    if d in ("front", "ahead", "0 degree"):
        return 0
    if d in ("back", "behind", "180 degree"):
        return 6
    parts = d.replace("degrees", "degree").split()
    try:
        deg = int(parts[0])
    except (ValueError, IndexError):
        return None
    if deg % 30 or not 0 < deg < 180:
        return None
    return deg // 30 if "left" in d else (360 - deg) // 30
