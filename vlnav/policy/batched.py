"""Batched policy decisions across many episodes, each with its own KV cache.

All episodes' caches live in one batch cache; each decision round appends every active
episode's new tokens (its previous answer label plus the new ``<step>`` segment), right-padded
to the round's longest segment. A 2-D attention mask hides the padding of earlier rounds, and
position ids count each episode's real tokens only, so every episode sees exactly the sequence
it would see alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from vlnav.policy.model import NavPolicy
from vlnav.policy.prompt import LABELS, STOP_LABEL, Decision, header_text


class BatchDecider:
    """Decisions for ``n`` episodes at once (episodes keep their slot until ``reset``).

    Llama-architecture LMs take the packed path (``vlnav.policy.packed``: no compute spent
    on padding) unless ``packed=False``; other models the model's own forward. By default
    (``packed=None``) the packed path is taken on the CPU only: on a GPU its per-episode
    attention calls cost more than the padding they save (README, Performance)."""

    def __init__(self, policy: NavPolicy, n: int, packed: bool | None = None) -> None:
        from vlnav.policy import packed as fast

        self.policy = policy
        self.n = n
        self.device = next(policy.parameters()).device  # a GPU's too
        if packed is None:
            packed = self.device.type == "cpu"
        self.fast = fast.PackedLlama(policy.lm, n) if packed and fast.supports(policy.lm) else None
        self.past: Any = None
        self.mask = torch.zeros((n, 0), dtype=torch.long, device=self.device)  # (n, cache)
        self.pos = [0] * n
        self.pending: list[list[int]] = [[] for _ in range(n)]
        self.marks: list[dict[str, str] | None] = [None] * n
        self.earlier: list[list] = [[] for _ in range(n)]  # observations of earlier decisions

    def start(self, slot: int, instruction: str) -> None:
        """Begin an episode in ``slot`` (its earlier cache entries are masked out)."""
        self.mask[slot] = 0
        self.pos[slot] = 0
        if self.fast is not None:
            self.fast.reset(slot)
        self.pending[slot] = self.policy.encode(header_text(instruction))
        self.marks[slot] = self.policy.marks(instruction)
        self.earlier[slot] = []

    def _packed_forward(
        self,
        emb: torch.Tensor,
        new_mask: torch.Tensor,
        pos: torch.Tensor,
        slots: list[int],
        sizes: list[int],
        needed: torch.Tensor,
    ) -> torch.Tensor:
        """The packed forward; on a CPU with k > 1 torch threads, as k groups of slots (about
        the same number of tokens each) run side by side in k threads of one torch thread
        each: a round's many small operations (one attention call per episode and layer)
        keep every core busy that way, where one forward on k threads leaves them waiting
        on each other."""
        threads = torch.get_num_threads()
        if threads < 2 or len(slots) < 2 or self.device.type != "cpu":
            return self.fast.forward(emb, new_mask, pos, needed)
        k = min(threads, len(slots))
        groups: list[list[int]] = [[] for _ in range(k)]
        total, done = sum(sizes), 0
        for s, n in zip(slots, sizes):  # consecutive slots, split by token count
            groups[min(k - 1, done * k // max(total, 1))].append(s)
            done += n
        masks = []
        for g in groups:
            if g:
                m = torch.zeros_like(new_mask)
                m[g] = new_mask[g]
                masks.append(m)
        pool = _pool(len(masks))
        torch.set_num_threads(1)
        try:
            outs = list(pool.map(lambda m: self.fast.forward(emb, m, pos, needed), masks))
        finally:
            torch.set_num_threads(threads)
        return torch.stack(outs).sum(0)  # each is zero outside its own slots

    @torch.no_grad()
    def decide(
        self, decisions: dict[int, Decision], force: dict[int, str] | None = None
    ) -> dict[int, tuple[str, np.ndarray]]:
        """One decision for each slot in ``decisions``: (label, label log-probabilities).
        ``force``: labels to take instead of the best ones (teacher forcing) in some slots."""
        pol = self.policy
        slots = sorted(decisions)
        segs, views, avails, labs, spans, pend = {}, {}, {}, {}, {}, {}
        for s in slots:
            ids, v, av, lp, spans[s] = pol.encode_step_spans(
                decisions[s], self.marks[s], self.earlier[s]
            )
            av = pol.decision_avail(decisions[s], self.marks[s], av)
            self.earlier[s].append(decisions[s].obs)
            labs[s] = [len(self.pending[s]) + max(p, 0) for p in lp]
            pend[s] = len(self.pending[s])
            segs[s] = self.pending[s] + ids
            views[s] = [-1] * len(self.pending[s]) + v
            avails[s] = av
        width = max(len(x) for x in segs.values())
        # built in numpy (a list into a row is cheap there), then handed to torch
        ids = np.full((self.n, width), pol.tokenizer.pad_token_id, dtype=np.int64)
        vw = np.full((self.n, width), -1, dtype=np.int64)
        new_mask = np.zeros((self.n, width), dtype=np.int64)
        pos = np.zeros((self.n, width), dtype=np.int64)
        needed = np.zeros((self.n, width), dtype=bool)  # the positions the scores read
        steps = np.arange(width)
        for s in slots:
            k = len(segs[s])
            ids[s, :k] = segs[s]
            vw[s, :k] = views[s]
            new_mask[s, :k] = 1
            pos[s] = self.pos[s] + np.minimum(steps, k - 1)
            needed[s, labs[s]] = True
            needed[s, k - 1] = True
        ids, vw, new_mask, pos = (torch.from_numpy(a) for a in (ids, vw, new_mask, pos))
        feats = None
        if pol.proj is not None:
            dim = pol.config.feature_dim
            feats = torch.zeros((self.n, 1, 12, dim))
            for s in slots:
                if decisions[s].features is not None:
                    feats[s, 0] = torch.as_tensor(np.asarray(decisions[s].features, np.float32))
            feats = feats.to(self.device)
        dev = self.device  # built on the CPU, moved once
        ids, vw, new_mask, pos = ids.to(dev), vw.to(dev), new_mask.to(dev), pos.to(dev)
        col = self.mask.shape[1]  # the padded path: where this round's columns begin
        if self.fast is not None:
            emb = pol.embed(ids, vw, torch.zeros_like(ids), feats)
            needed = torch.from_numpy(needed).to(dev)
            hidden = self._packed_forward(
                emb, new_mask, pos, slots, [len(segs[s]) for s in slots], needed
            )
        else:
            self.mask = torch.cat([self.mask, new_mask], dim=1)
            hidden, self.past = pol.step_logits(
                ids, vw, torch.zeros_like(ids), feats, self.mask, pos, self.past
            )
        # every slot's answer slot and label positions, scored in one call (one transfer)
        rows = torch.tensor(slots, device=dev)
        last = torch.tensor([len(segs[s]) - 1 for s in slots], device=dev)
        at = torch.tensor([labs[s] for s in slots], device=dev)  # (S, 13)
        avail = torch.tensor([avails[s] for s in slots], device=dev)
        scores = pol.label_logprobs(hidden[rows, last], hidden[rows[:, None], at], avail)
        scores = scores.cpu().numpy()
        out = {}
        for i, s in enumerate(slots):
            k = len(segs[s])
            self.pos[s] += k
            logp = scores[i]
            j = int(np.argmax(logp))
            label = STOP_LABEL if j == len(LABELS) else LABELS[j]
            label = (force or {}).get(s, label)
            self.pending[s] = [int(pol.label_ids[pol.label_index(label)])]
            out[s] = (label, logp)
            # compact history: the lines not chosen leave the context (the KV cache of the
            # packed path, the attention mask of the padded one)
            hide = [pend[s] + o for o in pol.hidden_after(spans[s], label)]
            if hide and self.fast is not None:
                self.fast.drop(s, hide, k)
            elif hide:
                self.mask[s, [col + o for o in hide]] = 0
        return out


_POOLS: dict[int, Any] = {}


def _pool(k: int) -> Any:
    """A process-wide pool of ``k`` threads for the packed forward's groups of slots."""
    if k not in _POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _POOLS[k] = ThreadPoolExecutor(k, thread_name_prefix="vlnav-decide")
    return _POOLS[k]


def _snapshot(sim: Any) -> Any:
    """The simulator state an episode needs back before its next step (pose and, for the
    builtin backend, the episode's rendering-domain draw)."""
    if hasattr(sim, "snapshot"):
        return sim.snapshot()
    return sim.agent_state()


def _restore(sim: Any, snap: Any) -> None:
    if hasattr(sim, "restore"):
        sim.restore(snap)
    else:
        sim.set_agent_state(snap.position, snap.heading)


def run_batched(
    sim: Any,
    tasks: list[tuple[int, Any]],
    agents: list[Any],
    max_steps: int,
    success_radius: float = 3.0,
) -> Iterator[Any]:
    """Roll out ``tasks`` ((index, episode), best all in one scene) with policy ``agents``
    (one per slot, sharing one policy) and yield each ``EpisodeRecord`` as it ends.

    Episodes run in waves of ``len(agents)``: each episode in turn is stepped in the one
    simulator (its state restored first) until it needs a decision, then every waiting
    episode's decision is taken in one batched forward (``BatchDecider``). The records equal
    ``run_episode``'s for the same agent, up to float noise in the batched forward."""
    from vlnav.evaluate import Rollout

    n = len(agents)
    policy = agents[0].policy
    for w in range(0, len(tasks), n):
        wave = tasks[w : w + n]
        decider = BatchDecider(policy, len(wave))
        rolls: dict[int, Rollout] = {}
        snaps: dict[int, Any] = {}
        for s, (index, episode) in enumerate(wave):
            rolls[s] = Rollout(sim, episode, agents[s], max_steps, index, success_radius)
            decider.start(s, episode.instruction_text)
            snaps[s] = _snapshot(sim)
        decided: set[int] = set()
        while rolls:
            waiting: dict[int, Decision] = {}
            for s in sorted(rolls):
                roll, agent = rolls[s], agents[s]
                _restore(sim, snaps[s])
                if s in decided:  # act on the decision just taken
                    decided.discard(s)
                    roll.step(agent.next_action(roll.state))
                while not roll.done:
                    d = agent.pending_decision(roll.state)
                    if d is not None:
                        waiting[s] = d
                        break
                    roll.step(agent.next_action(roll.state))
                if roll.done:
                    del rolls[s]
                    yield roll.record()
                else:
                    snaps[s] = _snapshot(sim)
            if waiting:
                for s, (label, _) in decider.decide(waiting).items():
                    agents[s].apply(waiting[s], label)
                    decided.add(s)
