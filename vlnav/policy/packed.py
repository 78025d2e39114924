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


class PackedLlama:
    """Per-slot KV caches and the forward of one round's new tokens for ``batch`` slots."""

    def __init__(self, lm: Any, batch: int) -> None:
        self.model = lm.model
        cfg = lm.config
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        n_layers = len(self.model.layers)
        # cache[layer][slot] = (keys, values), each (kv_heads, cached tokens, head_dim)
        self.cache: list[list[tuple[torch.Tensor, torch.Tensor] | None]] = [
            [None] * batch for _ in range(n_layers)
        ]

    def reset(self, slot: int) -> None:
        for layer in self.cache:
            layer[slot] = None

    def cached(self, slot: int) -> int:
        """How many tokens ``slot``'s cache holds."""
        past = self.cache[0][slot]
        return 0 if past is None else past[0].shape[1]

    def drop(self, slot: int, offsets: list[int], new: int) -> None:
        """Remove from ``slot``'s cache the tokens at ``offsets`` of the last ``new`` ones it
        took (the compact history's lines not chosen); position ids are unchanged."""
        n = self.cached(slot)
        if not offsets or not n:
            return
        gone = torch.zeros(n, dtype=torch.bool)
        gone[[n - new + o for o in offsets]] = True
        keep = (~gone).nonzero().squeeze(1).to(self.cache[0][slot][0].device)
        for layer in self.cache:
            k, v = layer[slot]
            layer[slot] = (k.index_select(1, keep), v.index_select(1, keep))

    @torch.no_grad()
    def forward(self, emb: torch.Tensor, new_mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, W, E) of the new tokens (zeros at padding).

        ``emb`` (B, W, E): embeddings, each row's real tokens first (``new_mask`` (B, W));
        ``pos`` (B, W): their position ids. A row without real tokens leaves its slot alone.
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
            past = self.cache[0][b]
            c = 0 if past is None else past[0].shape[1]
            allowed = torch.ones((n, c + n), dtype=torch.bool, device=h.device)
            allowed[:, c:] = torch.ones((n, n), dtype=torch.bool, device=h.device).tril()
            masks.append(allowed)
        for i, layer in enumerate(self.model.layers):
            attn = layer.self_attn
            D = attn.head_dim
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(-1, self.heads, D)
            k = attn.k_proj(x).view(-1, self.kv_heads, D)
            v = attn.v_proj(x).view(-1, self.kv_heads, D)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            outs, off = [], 0
            for (b, n), allowed in zip(rows, masks):
                qb = q[off : off + n].transpose(0, 1)  # (H, n, D)
                kb = k[off : off + n].transpose(0, 1)
                vb = v[off : off + n].transpose(0, 1)
                off += n
                past = self.cache[i][b]
                if past is not None:
                    kb = torch.cat([past[0], kb], dim=1)
                    vb = torch.cat([past[1], vb], dim=1)
                self.cache[i][b] = (kb, vb)
                if self.kv_heads != self.heads:
                    rep = self.heads // self.kv_heads
                    kb, vb = kb.repeat_interleave(rep, 0), vb.repeat_interleave(rep, 0)
                o = F.scaled_dot_product_attention(
                    qb[None], kb[None], vb[None], attn_mask=allowed, scale=attn.scaling
                )
                outs.append(o[0].transpose(0, 1).reshape(n, -1))
            h = h + attn.o_proj(torch.cat(outs, 0))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        h = self.model.norm(h)
        out = torch.zeros((B * W, E), dtype=h.dtype, device=h.device)
        out.index_copy_(0, flat, h)
        return out.view(B, W, E)
