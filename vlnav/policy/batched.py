"""Batched policy decisions across many episodes, each with its own KV cache.

All episodes' caches live in one batch cache; each decision round appends every active
episode's new tokens (its previous answer label plus the new ``<step>`` segment), right-padded
to the round's longest segment. A 2-D attention mask hides the padding of earlier rounds, and
position ids count each episode's real tokens only, so every episode sees exactly the sequence
it would see alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vlnav.policy.model import NavPolicy
from vlnav.policy.prompt import LABELS, STOP_LABEL, Decision, header_text


class BatchDecider:
    """Decisions for ``n`` episodes at once (episodes keep their slot until ``reset``)."""

    def __init__(self, policy: NavPolicy, n: int) -> None:
        self.policy = policy
        self.n = n
        self.past: Any = None
        self.mask = torch.zeros((n, 0), dtype=torch.long)  # (n, cache length)
        self.pos = [0] * n
        self.pending: list[list[int]] = [[] for _ in range(n)]

    def start(self, slot: int, instruction: str) -> None:
        """Begin an episode in ``slot`` (its earlier cache entries are masked out)."""
        self.mask[slot] = 0
        self.pos[slot] = 0
        self.pending[slot] = self.policy.encode(header_text(instruction))

    @torch.no_grad()
    def decide(self, decisions: dict[int, Decision]) -> dict[int, tuple[str, np.ndarray]]:
        """One decision for each slot in ``decisions``: (label, label log-probabilities)."""
        pol = self.policy
        slots = sorted(decisions)
        segs, views, avails, labs = {}, {}, {}, {}
        for s in slots:
            ids, v, av, lp = pol.encode_step_full(decisions[s])
            labs[s] = [len(self.pending[s]) + max(p, 0) for p in lp]
            segs[s] = self.pending[s] + ids
            views[s] = [-1] * len(self.pending[s]) + v
            avails[s] = av
        width = max(len(x) for x in segs.values())
        ids = torch.full((self.n, width), pol.tokenizer.pad_token_id, dtype=torch.long)
        vw = torch.full((self.n, width), -1, dtype=torch.long)
        new_mask = torch.zeros((self.n, width), dtype=torch.long)
        pos = torch.zeros((self.n, width), dtype=torch.long)
        for s in slots:
            k = len(segs[s])
            ids[s, :k] = torch.tensor(segs[s])
            vw[s, :k] = torch.tensor(views[s])
            new_mask[s, :k] = 1
            pos[s, :k] = torch.arange(self.pos[s], self.pos[s] + k)
            pos[s, k:] = self.pos[s] + k - 1
        feats = None
        if pol.proj is not None:
            dim = pol.config.feature_dim
            feats = torch.zeros((self.n, 1, 12, dim))
            for s in slots:
                if decisions[s].features is not None:
                    feats[s, 0] = torch.as_tensor(np.asarray(decisions[s].features, np.float32))
        mask = torch.cat([self.mask, new_mask], dim=1)
        hidden, self.past = pol.step_logits(
            ids, vw, torch.zeros_like(ids), feats, mask, pos, self.past
        )
        self.mask = mask
        out = {}
        for s in slots:
            k = len(segs[s])
            self.pos[s] += k
            logits = pol._label_logits(hidden[s, k - 1], hidden[s, labs[s]])
            logits = logits.masked_fill(~torch.tensor(avails[s]), float("-inf"))
            logp = torch.log_softmax(logits, -1).numpy()
            j = int(np.argmax(logp))
            label = STOP_LABEL if j == len(LABELS) else LABELS[j]
            self.pending[s] = [int(pol.label_ids[pol.label_index(label)])]
            out[s] = (label, logp)
        return out
