"""A packed decoding path for Llama-architecture LMs, used by ``BatchDecider``.

In a decision round every active episode appends its new segment (40 to 190 tokens), so a
padded (B, W) batch is about 40 % padding, and a padded KV cache keeps every earlier round's
padding too. Here the norms, projections and MLPs run on the real tokens only, packed into
one (N, E) matrix, and each episode attends over its own unpadded KV cache. The weights are
the model's own modules, so the result equals the model's forward up to float rounding
(tested).

Used for ``transformers`` Llama models (the default policy, SmolLM2, ...) whose decoder
layers have the standard structure; any other model takes the generic path.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def supports(lm: Any) -> bool:
    """Whether ``lm`` is a plain Llama-family causal LM this path can run."""
    model = getattr(lm, "model", None)
    layers = getattr(model, "layers", None)
    if layers is None or not len(layers) or not hasattr(model, "rotary_emb"):
        return False
    layer = layers[0]
    attn = getattr(layer, "self_attn", None)
    need = ("q_proj", "k_proj", "v_proj", "o_proj", "scaling", "head_dim")
    return (
        type(layer).__name__ == "LlamaDecoderLayer"
        and attn is not None
        and all(hasattr(attn, n) for n in need)
        and hasattr(layer, "mlp")
    )


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def _norm(norm: Any, x: torch.Tensor) -> torch.Tensor:
    """A Llama RMSNorm in float32, its mean square from the vector norm (one fast
    reduction; ``F.rms_norm`` and the module's ``pow().mean()`` are several times slower on
    a CPU); the module's own math for other dtypes."""
    if x.dtype == torch.float32 and type(norm).__name__ == "LlamaRMSNorm":
        ms = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.shape[-1])
        return (x * ms.add_(norm.variance_epsilon).rsqrt_()).mul_(norm.weight)
    return norm(x)


def _mlp(mlp: Any, x: torch.Tensor) -> torch.Tensor:
    """A Llama MLP, down(silu(gate(x)) * up(x)), its element-wise part in place."""
    if type(mlp).__name__ != "LlamaMLP" or getattr(mlp.config, "hidden_act", None) != "silu":
        return mlp(x)
    g = mlp.gate_proj(x)
    F.silu(g, inplace=True)
    return mlp.down_proj(g.mul_(mlp.up_proj(x)))


class PackedLlama:
    """Per-slot KV caches and the forward of one round's new tokens for ``batch`` slots."""

    def __init__(self, lm: Any, batch: int) -> None:
        self.model = lm.model
        cfg = lm.config
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        n_layers = len(self.model.layers)
        # slot -> the cached tokens it keeps (``drop``), applied at its next forward: so
        # that the copies run in the forward's threads (``BatchDecider``), not between them
        self.keep: dict[int, torch.Tensor] = {}
        # cache[layer][slot] = (keys, values), each (kv_heads, cached tokens, head_dim)
        self.cache: list[list[tuple[torch.Tensor, torch.Tensor] | None]] = [
            [None] * batch for _ in range(n_layers)
        ]

    def reset(self, slot: int) -> None:
        for layer in self.cache:
            layer[slot] = None
        self.keep.pop(slot, None)

    def cached(self, slot: int) -> int:
        """How many tokens ``slot``'s cache holds."""
        if slot in self.keep:
            return len(self.keep[slot])
        past = self.cache[0][slot]
        return 0 if past is None else past[0].shape[1]

    def drop(self, slot: int, offsets: list[int], new: int) -> None:
        """Remove from ``slot``'s cache the tokens at ``offsets`` of the last ``new`` ones it
        took (the compact history's lines not chosen); position ids are unchanged."""
        past = self.cache[0][slot]
        if not offsets or past is None:
            return
        n = past[0].shape[1]
        if slot in self.keep:  # not applied yet: an index into the kept ones
            keep = self.keep[slot]
        else:
            keep = torch.arange(n)
        m = int(keep.shape[0])
        gone = torch.zeros(m, dtype=torch.bool)
        gone[torch.tensor(offsets) + (m - new)] = True
        self.keep[slot] = keep[~gone.to(keep.device)].to(past[0].device)

    @torch.no_grad()
    def forward(
        self,
        emb: torch.Tensor,
        new_mask: torch.Tensor,
        pos: torch.Tensor,
        needed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final hidden states (B, W, E) of the new tokens (zeros at padding).

        ``emb`` (B, W, E): embeddings, each row's real tokens first (``new_mask`` (B, W));
        ``pos`` (B, W): their position ids. A row without real tokens leaves its slot alone.
        ``needed`` (B, W) bool: the tokens whose final states are wanted (the others are
        zeros): the last layer computes keys and values for every token, for the cache, but
        queries, attention, projection and MLP for these only.
        """
        B, W, E = emb.shape
        lengths = new_mask.sum(1).tolist()
        flat = new_mask.bool().reshape(-1).nonzero().squeeze(1)  # rows stay in slot order
        h = emb.reshape(B * W, E).index_select(0, flat)  # (N, E): no padding from here on
        p = pos.reshape(-1).index_select(0, flat)[None]  # (1, N)
        cos, sin = self.model.rotary_emb(h[None], position_ids=p)  # (1, N, D)
        cos, sin = cos[0][:, None], sin[0][:, None]  # (N, 1, D)
        rows = [(b, k) for b, k in enumerate(lengths) if k]
        # each new token sees its episode's whole cache and its new tokens up to itself; the
        # cache lengths are the same in every layer, so the masks are built once
        masks = []
        for b, n in rows:
            c = self.cached(b)
            allowed = torch.ones((n, c + n), dtype=torch.bool, device=h.device)
            allowed[:, c:] = torch.ones((n, n), dtype=torch.bool, device=h.device).tril()
            masks.append(allowed)
        # the last layer's queries: each episode's needed tokens (offsets in its segment)
        pick, picks = None, []
        if needed is not None:
            want = needed.bool().reshape(-1).index_select(0, flat)  # (N,)
            pick = want.nonzero().squeeze(1)
            off = 0
            for _, n in rows:
                picks.append(want[off : off + n].nonzero().squeeze(1))
                off += n
        last = len(self.model.layers) - 1
        for i, layer in enumerate(self.model.layers):
            attn = layer.self_attn
            D = attn.head_dim
            sub = pick is not None and i == last
            x = _norm(layer.input_layernorm, h)
            k = attn.k_proj(x).view(-1, self.kv_heads, D)
            v = attn.v_proj(x).view(-1, self.kv_heads, D)
            k = k * cos + _rotate_half(k) * sin
            if sub:
                x = x.index_select(0, pick)
                q = attn.q_proj(x).view(-1, self.heads, D)
                q = q * cos[pick] + _rotate_half(q) * sin[pick]
            else:
                q = attn.q_proj(x).view(-1, self.heads, D)
                q = q * cos + _rotate_half(q) * sin
            outs, off, qoff = [], 0, 0
            for j, ((b, n), allowed) in enumerate(zip(rows, masks)):
                m = len(picks[j]) if sub else n
                qb = q[qoff : qoff + m].transpose(0, 1)  # (H, m, D)
                kb = k[off : off + n].transpose(0, 1)
                vb = v[off : off + n].transpose(0, 1)
                off += n
                qoff += m
                past = self.cache[i][b]
                if past is not None:
                    pk, pv = past
                    if b in self.keep:  # the lines dropped at the last decision
                        pk, pv = pk.index_select(1, self.keep[b]), pv.index_select(1, self.keep[b])
                    kb = torch.cat([pk, kb], dim=1)
                    vb = torch.cat([pv, vb], dim=1)
                self.cache[i][b] = (kb, vb)
                if not m:
                    continue
                if self.kv_heads != self.heads:
                    rep = self.heads // self.kv_heads
                    kb, vb = kb.repeat_interleave(rep, 0), vb.repeat_interleave(rep, 0)
                mask = allowed.index_select(0, picks[j]) if sub else allowed
                o = F.scaled_dot_product_attention(
                    qb[None], kb[None], vb[None], attn_mask=mask, scale=attn.scaling
                )
                outs.append(o[0].transpose(0, 1).reshape(m, -1))
            if sub:
                h = h.index_select(0, pick)
                if not outs:  # nothing wanted
                    break
            h = h + attn.o_proj(torch.cat(outs, 0))
            h = h + _mlp(layer.mlp, _norm(layer.post_attention_layernorm, h))
        for b, _ in rows:
            self.keep.pop(b, None)
        h = _norm(self.model.norm, h)
        out = torch.zeros((B * W, E), dtype=h.dtype, device=h.device)
        out.index_copy_(0, flat if pick is None else flat.index_select(0, pick), h)
        return out.view(B, W, E)
