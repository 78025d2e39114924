"""The policy model: a causal LM (transformers) that scores candidate labels, with optional
visual fusion.

Default: a small Llama-architecture model trained from scratch with a word-level tokenizer
trained on the corpus (the ``tokenizers`` library). ``pretrained: <hub id or path>`` loads
any ``AutoModelForCausalLM`` (e.g. SmolLM2-135M) and its tokenizer instead, fine-tuned fully
or with LoRA (peft); the label tokens are added to its vocabulary.

Fusion (``none | add | prefix``): per-view visual features (12 per decision) are projected
into the LM's embedding space and added to every token of that candidate's text (``add``) or
placed as one extra embedding before the candidate's label (``prefix``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vlnav import VlnavError
from vlnav.config import check_choice, check_range
from vlnav.policy.prompt import (
    LABELS,
    MARKED,
    PROMPT_STYLES,
    SPECIAL,
    START_TURN_KEY,
    STOP_LABEL,
    Decision,
    candidate_line,
    header_text,
    landmark_marks,
    progress_words,
    start_turn,
    start_turn_views,
    stop_allowed,
    stop_line,
    visited_views,
)

CHECKPOINT_KIND = "vlnav-policy"
IMG_TOKEN = "<img>"


@dataclass
class PolicyConfig:
    layers: int = 4
    hidden: int = 128
    heads: int = 4
    intermediate: int = 512
    max_len: int = 4096
    fusion: str = "none"  # none | add | prefix
    # how a label is scored at <ans>: "label" = the LM head (static label embeddings);
    # "pointer" = the LM head plus the label's contextual state at the end of its line
    head: str = "pointer"
    # candidate lines (vlnav/policy/prompt.py): "langnav" (To your 30 degree left is,
    # <caption>), "compact", "distances" (objects' metres), "matched" (distances, with the
    # instruction's landmarks marked) or "here" (matched, and Stop's line names the room and
    # the nearby objects)
    prompt: str = "langnav"
    feature_dim: int = 0  # size of the visual features (set from the encoder)
    pretrained: str | None = None  # hub id or local path of a causal LM
    lora: bool = False
    lora_r: int = 8
    dropout: float = 0.0
    # decision time only (not in the training loss): subtracted from Stop's logit. The
    # imitation loss rates a false Stop like any wrong move, but a false Stop ends the episode
    stop_bias: float = 0.0
    # Stop decided by its own head: a classifier on the answer slot's state, trained at every
    # decision on whether the agent is within ``optim.stop_within`` metres of the goal; the
    # moves are scored among themselves, and P(move k) = (1 - P(stop)) * P(k | moving)
    stop_head: bool = False
    # mark each candidate whose waypoint lies within this many metres of a place where the
    # agent already decided ("... visited <C>"), from its own odometry: an agent that cannot
    # see where it has been walks back and forth between two places (0: off)
    visited: float = 0.0
    # begin each decision with the instruction's landmarks reached so far ("<step> passed lm1
    # lm2 ..."; marked prompts only), from the agent's own observations: the model need not
    # track its progress through the instruction over the history
    progress: bool = False
    # decision time only: Stop is not available unless the instruction's final landmark is
    # around the agent (an object within this many metres in some view, or the room it is
    # in; ``prompt.stop_allowed``). A lost policy otherwise stops where nothing matches the
    # instruction's goal (0: off)
    stop_gate: float = 0.0
    # at the first decision, end each candidate line in the direction of the instruction's
    # opening turn ("Turn right and ...", "Spin around ...") with the word ``turn``
    # (``prompt.start_turn``): the one decision where the instruction's left and right are
    # the agent's starting heading's, and the only one of its kind per episode to learn from
    start_turn: bool = False
    # "full": every earlier decision's whole segment stays in the context; "compact": an
    # earlier decision is seen through the line that was chosen (LangNav's compact history:
    # what was chosen at each step). The other candidates' lines (and Stop's) are hidden
    # from every later token: by the attention mask in training, and dropped from the KV
    # cache when deciding, so a decision attends over a short context
    history: str = "full"

    def __post_init__(self) -> None:
        check_range("layers", self.layers, 1, 64)
        check_range("hidden", self.hidden, 16, 8192)
        check_range("heads", self.heads, 1, 128)
        if self.hidden % self.heads:
            raise_cfg(f"hidden={self.hidden} must be a multiple of heads={self.heads}")
        check_range("max_len", self.max_len, 128, 131072)
        check_choice("fusion", self.fusion, ("none", "add", "prefix"))
        check_choice("head", self.head, ("label", "pointer"))
        check_choice("prompt", self.prompt, PROMPT_STYLES)
        check_choice("history", self.history, ("full", "compact"))
        check_range("lora_r", self.lora_r, 1, 512)
        check_range("dropout", self.dropout, 0.0, 0.9)
        check_range("stop_bias", self.stop_bias, -20.0, 20.0)
        check_range("visited", self.visited, 0.0, 100.0)
        check_range("stop_gate", self.stop_gate, 0.0, 100.0)
        if self.progress and self.prompt not in MARKED:
            raise_cfg(f"policy.progress needs a marked prompt {MARKED}, not '{self.prompt}'")
        if self.start_turn and self.prompt not in MARKED:
            raise_cfg(f"policy.start_turn needs a marked prompt {MARKED}, not '{self.prompt}'")


def raise_cfg(msg: str) -> None:
    from vlnav.config import ConfigError

    raise ConfigError(msg)


def build_tokenizer(texts: list[str], extra_words: list[str] = ()) -> Any:
    """A word-level tokenizer (``tokenizers``) over the corpus, wrapped for transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from vlnav.policy.prompt import words

    vocab: dict[str, int] = {}
    for tok in [*SPECIAL, IMG_TOKEN]:
        vocab.setdefault(tok, len(vocab))
    seen: set[str] = set(extra_words)
    for t in texts:
        seen.update(words(t))
    for w in sorted(seen):
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>"
    )
    fast.add_special_tokens({"additional_special_tokens": [*SPECIAL[3:], IMG_TOKEN]})
    return fast


class NavPolicy(nn.Module):
    """Causal LM + label scoring + fusion projection."""

    def __init__(self, lm: Any, tokenizer: Any, config: PolicyConfig) -> None:
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        self.config = config
        # a buffer, so that .to(device) moves it with the weights (not saved: the tokenizer
        # gives it)
        self.register_buffer(
            "label_ids",
            torch.tensor(tokenizer.convert_tokens_to_ids([*LABELS, STOP_LABEL]), dtype=torch.long),
            persistent=False,
        )
        self.img_id = tokenizer.convert_tokens_to_ids(IMG_TOKEN)
        emb = lm.get_input_embeddings().embedding_dim
        self.proj = (
            nn.Linear(config.feature_dim, emb)
            if config.fusion != "none" and config.feature_dim > 0
            else None
        )
        # pointer head: a zero-initialised bilinear map, so training starts from the LM head
        self.pointer = nn.Linear(emb, emb, bias=False) if config.head == "pointer" else None
        if self.pointer is not None:
            nn.init.zeros_(self.pointer.weight)
        self.stop_head = (
            nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, 1))
            if config.stop_head
            else None
        )
        self._cache: dict[str, list[int]] = {}
        self._words = _word_level_vocab(tokenizer)

    # ------------------------------------------------------------ construction
    @classmethod
    def create(cls, config: PolicyConfig, tokenizer: Any) -> NavPolicy:
        from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

        if config.pretrained:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(config.pretrained)
            tokenizer.add_special_tokens({"additional_special_tokens": [*SPECIAL[2:], IMG_TOKEN]})
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token or "<pad>"
            lm = AutoModelForCausalLM.from_pretrained(config.pretrained)
            lm.resize_token_embeddings(len(tokenizer))
            if config.lora:
                from peft import LoraConfig, get_peft_model

                lm = get_peft_model(
                    lm,
                    LoraConfig(
                        r=config.lora_r,
                        lora_alpha=2 * config.lora_r,
                        target_modules="all-linear",
                        modules_to_save=["embed_tokens"],
                    ),
                )
        else:
            lm = LlamaForCausalLM(
                LlamaConfig(
                    vocab_size=len(tokenizer),
                    hidden_size=config.hidden,
                    intermediate_size=config.intermediate,
                    num_hidden_layers=config.layers,
                    num_attention_heads=config.heads,
                    num_key_value_heads=config.heads,
                    max_position_embeddings=config.max_len,
                    pad_token_id=tokenizer.pad_token_id,
                    bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=None,
                    attention_dropout=config.dropout,
                    tie_word_embeddings=True,
                )
            )
        _ = AutoModelForCausalLM  # the generic loader is used by load() for saved models
        return cls(lm, tokenizer, config)

    # ------------------------------------------------------------ encoding
    def encode(self, text: str) -> list[int]:
        if self._words is not None:  # the word-level tokenizer: a lookup per word
            vocab, unk = self._words
            return [vocab.get(w, unk) for w in text.split()]
        hit = self._cache.get(text)  # other tokenizers: each text once
        if hit is None:
            hit = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(self._cache) < 200_000:
                self._cache[text] = hit
        return list(hit)

    def marks(self, instruction: str) -> dict[str, str] | None:
        """The landmark marks of ``instruction`` for the marked prompts (``matched``,
        ``here``), else None; with ``start_turn``, also the instruction's opening turn under
        ``START_TURN_KEY`` (one per-episode dict reaches every encoder of a step)."""
        wanted = self.config.prompt in MARKED or self.config.stop_gate > 0
        if not wanted:
            return None
        marks = landmark_marks(instruction)
        turn = start_turn(instruction) if self.config.start_turn else None
        if turn:
            marks[START_TURN_KEY] = turn
        return marks

    def decision_avail(
        self, decision: Decision, marks: dict[str, str] | None, avail: list[bool]
    ) -> list[bool]:
        """The labels available when deciding (never in the loss): ``avail`` with Stop
        removed where the stop gate (``stop_gate``) says the agent may not stop here."""
        gate = self.config.stop_gate
        if gate > 0 and any(avail[:-1]) and not stop_allowed(decision.obs, marks, gate):
            return [*avail[:-1], False]
        return avail

    def encode_step(
        self, decision: Decision, marks: dict[str, str] | None = None, earlier: list = ()
    ) -> tuple[list[int], list[int], list[bool]]:
        """(token ids, view index per token (-1 outside candidates), available labels).
        ``earlier``: the episode's earlier observations (``policy.visited``, ``progress``)."""
        ids, views, avail, _, _ = self.encode_step_spans(decision, marks, earlier)
        return ids, views, avail

    def encode_step_spans(
        self, decision: Decision, marks: dict[str, str] | None = None, earlier: list = ()
    ) -> tuple[list[int], list[int], list[bool], list[int], list[tuple[int, int]]]:
        """As ``encode_step``, plus each label's token offset in the segment (-1: absent) and
        its line as a (start, end) token range of the segment ((0, 0): absent; Stop's line
        ends before ``<ans>``)."""
        obs = decision.obs
        spans = [(0, 0)] * (len(LABELS) + 1)
        seen = visited_views(obs, [o.position for o in earlier], self.config.visited)
        turned = start_turn_views((marks or {}).get(START_TURN_KEY)) if not earlier else set()
        labpos = [-1] * (len(LABELS) + 1)
        # candidate lines are encoded one by one to know which view each token belongs to
        head = ["<step>"]
        if self.config.progress:
            head += progress_words([*earlier, obs], marks)
        ids = self.encode(" ".join(head))
        views = [-1] * len(ids)
        for c in obs.candidates:
            line = candidate_line(c, self.config.prompt, marks, c.index in seen, c.index in turned)
            piece = self.encode(line)
            if self.config.fusion == "prefix":
                piece = [self.img_id, *piece]
            spans[c.index] = (len(ids), len(ids) + len(piece))
            ids += piece
            views += [c.index] * len(piece)
            labpos[c.index] = len(ids) - 1
        tail = self.encode(f"{stop_line(obs, self.config.prompt, marks)} <ans>")
        spans[-1] = (len(ids), len(ids) + len(tail) - 1)
        ids += tail
        views += [-1] * len(tail)
        labpos[-1] = len(ids) - 2
        avail = [False] * (len(LABELS) + 1)
        for c in obs.candidates:
            avail[c.index] = True
        avail[-1] = True
        return ids, views, avail, labpos, spans

    def hidden_after(self, spans: list[tuple[int, int]], label: str) -> list[int]:
        """With ``history: compact``, the offsets in a decision's segment that later tokens
        do not see once ``label`` is chosen: every line but the chosen one (Stop's
        included); [] with the full history."""
        if self.config.history != "compact":
            return []
        keep = self.label_index(label)
        return [o for k, (a, b) in enumerate(spans) if k != keep for o in range(a, b)]

    def label_index(self, label: str) -> int:
        return len(LABELS) if label == STOP_LABEL else LABELS.index(label)

    def episode_tensors(self, instruction: str, decisions: list[Decision]) -> dict[str, Any]:
        """One training sequence: all decisions of an episode, the loss at every ``<ans>``."""
        ids = self.encode(header_text(instruction))
        marks = self.marks(instruction)
        views = [-1] * len(ids)
        steps = [-1] * len(ids)
        until = [-1] * len(ids)  # compact history: the last position that sees this token
        ans, targets, avail, labpos, goods, regrets, dist = [], [], [], [], [], [], []
        for s, d in enumerate(decisions):
            earlier = [x.obs for x in decisions[:s]]
            sid, sv, av, lp, spans = self.encode_step_spans(d, marks, earlier)
            labpos.append([len(ids) + o if o >= 0 else 0 for o in lp])
            seg_until = [-1] * len(sid)
            for o in self.hidden_after(spans, d.label):
                seg_until[o] = len(ids) + len(sid) - 1  # seen up to this step's <ans>
            until += seg_until
            ids += sid
            views += sv
            steps += [s] * len(sid)
            ans.append(len(ids) - 1)
            targets.append(self.label_index(d.label))
            avail.append(av)
            good = [False] * len(av)  # the loss keeps the available ones
            for g in [d.label, *(d.good or [])]:
                good[self.label_index(g)] = True
            goods.append(good)
            regret = [0.0] * len(av)  # none recorded (older data): the term is zero
            for lab, r in (d.regret or {}).items():
                regret[self.label_index(lab)] = float(r)
            regrets.append(regret)
            dist.append(float("nan") if d.distance is None else float(d.distance))
            ids.append(int(self.label_ids[targets[-1]]))
            views.append(-1)
            steps.append(s)
            until.append(-1)
        if len(ids) > self.config.max_len:
            raise VlnavError(f"episode sequence of {len(ids)} tokens exceeds max_len")
        feats = None
        if self.proj is not None:
            feats = np.stack([np.asarray(d.features, np.float32) for d in decisions])
        return {
            "input_ids": ids,
            "views": views,
            "steps": steps,
            "ans": ans,
            "targets": targets,
            "avail": avail,
            "good": goods,
            "regret": regrets,
            "distance": dist,
            "labpos": labpos,
            "features": feats,
            "until": until,
        }

    # ------------------------------------------------------------ forward
    def embed(
        self,
        input_ids: torch.Tensor,
        views: torch.Tensor | None,
        steps: torch.Tensor | None,
        feats: torch.Tensor | None,
    ) -> torch.Tensor:
        """Token embeddings with the visual features fused in.  (B, T) -> (B, T, E)"""
        emb = self.lm.get_input_embeddings()(input_ids)
        if self.proj is None or feats is None or views is None:
            return emb
        # feats: (B, S, 12, F) -> projected (B, S, 12, E)
        pf = self.proj(feats.to(self.proj.weight.dtype))
        b_idx = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None]
        b_idx = b_idx.expand_as(input_ids)
        on = (views >= 0) & (steps >= 0)
        gathered = pf[b_idx[on], steps[on], views[on]]  # (N, E)
        if self.config.fusion == "add":
            emb = emb.clone()
            emb[on] = emb[on] + gathered
        else:  # prefix: the <img> token's embedding becomes the view's feature
            is_img = on & (input_ids == self.img_id)
            emb = emb.clone()
            sel = is_img[on]
            emb[is_img] = gathered[sel]
        return emb

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        lm_weight: float = 0.0,
        answers: str = "best",
        regret_weight: float = 0.0,
        stop_weight: float = 1.0,
        stop_within: float = 2.5,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss(batch, lm_weight, answers, regret_weight, stop_weight, stop_within)

    def loss(
        self,
        batch: dict[str, torch.Tensor],
        lm_weight: float = 0.0,
        answers: str = "best",
        regret_weight: float = 0.0,
        stop_weight: float = 1.0,
        stop_within: float = 2.5,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over every decision of the batch, and decision accuracy.

        ``answers="best"``: the expert's label is the target. ``"good"``: every label the
        expert rates as good (``batch["good"]``: waypoints within its tolerance of the best
        one's distance to the goal) is right; the loss is minus the log of their total
        probability, and a decision counts as accurate when it picks any of them.

        With the stop head (``policy.stop_head``) the moves are scored among themselves (the
        loss at every decision with a right move) and Stop by the head: a binary
        cross-entropy, weighted ``stop_weight``, on whether the agent is within
        ``stop_within`` metres of the goal (``batch["distance"]``; decisions without one
        are skipped), at every decision.

        With ``regret_weight > 0`` the expected regret is added with that weight: the
        policy's probability of each answer times its regret (``batch["regret"]``, metres it
        loses against the expert's answer, 0 for the good ones), so that among wrong answers
        the costly ones (the wrong way, a Stop far from the goal) are pushed down hardest.

        With ``lm_weight > 0`` the next-token loss over the whole sequence (instruction and
        captions) is added with that weight: language modelling of the observations, as in
        TinyStories-style training, on top of the decision loss.
        """
        emb = self.embed(
            batch["input_ids"], batch.get("views"), batch.get("steps"), batch.get("features")
        )
        mask = batch["attention_mask"]
        attn = batch.get("attention_4d")  # compact history: the mask that hides old lines
        if attn is None:  # an all-ones mask is dropped: attention takes the causal kernel
            attn = None if bool(mask.all()) else mask
        out = self.lm(
            inputs_embeds=emb,
            attention_mask=attn,
            output_hidden_states=True,
            # without the language-modelling loss only the hidden states are used
            logits_to_keep=0 if lm_weight > 0 else 1,
        )
        hidden = out.hidden_states[-1]  # (B, T, E)
        b, a = batch["ans_batch"], batch["ans_pos"]  # (D,), (D,)
        h = hidden[b, a]  # (D, E)
        h_lab = hidden[b[:, None], batch["labpos"]]  # (D, 13, E)
        avail = batch["avail"]
        if self.stop_head is None:
            logp = self.label_logprobs(h, h_lab, avail)  # (D, 13)
        else:  # the parts once: the moves given a move, Stop's log-odds
            moves, z = self._stop_head_parts(h, h_lab, avail)
            logp = _mixture(moves, z, avail)
        if answers == "good":  # every answer as good as the expert's is right
            good = batch["good"] & avail
        else:
            good = nn.functional.one_hot(batch["targets"], len(LABELS) + 1).bool()
        acc = good.gather(1, logp.argmax(-1, keepdim=True)).float().mean()
        if self.stop_head is None:  # minus the log of the right answers' total probability
            loss = -torch.logsumexp(logp.masked_fill(~good, float("-inf")), -1).mean()
        else:
            right = good[:, :-1]
            has = right.any(-1)
            loss = -torch.logsumexp(moves[has].masked_fill(~right[has], float("-inf")), -1)
            loss = loss.sum() / max(int(has.sum()), 1)
            dist = batch["distance"].to(h.device)
            known = ~torch.isnan(dist)
            if known.any():
                near = (dist[known] <= stop_within).float()
                bce = nn.functional.binary_cross_entropy_with_logits(z[known], near)
                loss = loss + stop_weight * bce
        if regret_weight > 0:
            prob = logp.exp()  # unavailable labels: probability 0
            loss = loss + regret_weight * (prob * batch["regret"]).sum(-1).mean()
        if lm_weight > 0:
            lm_logits = out.logits[:, :-1]  # (B, T-1, V)
            nxt = batch["input_ids"][:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            lm = nn.functional.cross_entropy(lm_logits.transpose(1, 2), nxt, ignore_index=-100)
            loss = loss + lm_weight * lm
        return loss, acc

    def _label_logits(self, h: torch.Tensor, h_lab: torch.Tensor | None = None) -> torch.Tensor:
        """Raw label scores at the answer slot.  h (..., E), h_lab (..., 13, E) -> (..., 13)"""
        head = self.lm.get_output_embeddings()
        w = head.weight[self.label_ids]  # (13, E)
        out = h @ w.T
        if getattr(head, "bias", None) is not None:
            out = out + head.bias[self.label_ids]
        if self.pointer is not None and h_lab is not None:
            out = out + (self.pointer(h_lab) * h.unsqueeze(-2)).sum(-1)
        return out

    def _stop_head_parts(
        self, h: torch.Tensor, h_lab: torch.Tensor | None, avail: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """With the stop head: log P(move k | moving) over the available moves (..., 12),
        and the head's log-odds of "within reach: stop" (...,), less the Stop bias when
        deciding."""
        logits = self._label_logits(h, h_lab)[..., :-1].float()
        moves = torch.log_softmax(logits.masked_fill(~avail[..., :-1], float("-inf")), -1)
        bias = self.config.stop_bias if not self.training else 0.0
        return moves, self.stop_head(h).squeeze(-1).float() - bias

    def label_logprobs(
        self, h: torch.Tensor, h_lab: torch.Tensor | None, avail: torch.Tensor
    ) -> torch.Tensor:
        """Log-probabilities of the labels at the answer slot (-inf where unavailable).
        h (..., E), h_lab (..., 13, E), avail (..., 13) bool -> (..., 13) float32.

        When deciding (eval mode, never in the loss) ``stop_bias`` is subtracted from Stop's
        logit (with the stop head: from its log-odds)."""
        if self.stop_head is None:
            bias = self.config.stop_bias if not self.training else 0.0
            logits = self._label_logits(h, h_lab).float()
            logits = torch.cat([logits[..., :-1], logits[..., -1:] - bias], -1)
            return torch.log_softmax(logits.masked_fill(~avail, float("-inf")), -1)
        return _mixture(*self._stop_head_parts(h, h_lab, avail), avail)

    @torch.no_grad()
    def step_logits(
        self,
        input_ids: torch.Tensor,
        views: torch.Tensor,
        steps: torch.Tensor,
        feats: torch.Tensor | None,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past: Any,
    ) -> tuple[torch.Tensor, Any]:
        """Incremental forward of new segments; label logits at each row's last real token."""
        emb = self.embed(input_ids, views, steps, feats)
        # transformers >= 5.2x names the KV cache ``cache``; older releases ``past_key_values``
        key = "cache" if _takes_cache(self.lm) else "past_key_values"
        out = self.lm(
            inputs_embeds=emb,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            output_hidden_states=True,
            logits_to_keep=1,
            **{key: past},
        )
        hidden = out.hidden_states[-1]
        return hidden, getattr(out, key)

    # ------------------------------------------------------------ io
    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        lm = self.lm
        if hasattr(lm, "merge_and_unload"):  # LoRA: save merged weights
            lm = lm.merge_and_unload()
        lm.save_pretrained(path / "lm", safe_serialization=True)
        self.tokenizer.save_pretrained(path / "lm")
        extra_w = {}
        if self.pointer is not None:
            extra_w.update({f"pointer.{k}": v for k, v in self.pointer.state_dict().items()})
        if self.proj is not None:
            extra_w.update({f"proj.{k}": v for k, v in self.proj.state_dict().items()})
        if self.stop_head is not None:
            extra_w.update({f"stop_head.{k}": v for k, v in self.stop_head.state_dict().items()})
        if extra_w:
            from safetensors.torch import save_file

            save_file(
                {k: v.contiguous() for k, v in extra_w.items()}, str(path / "heads.safetensors")
            )
        meta = {"kind": CHECKPOINT_KIND, "policy": asdict(self.config), **(extra or {})}
        meta["policy"]["pretrained"] = None  # the saved LM is self-contained
        meta["policy"]["lora"] = False
        (path / "policy.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> tuple[NavPolicy, dict[str, Any]]:
        path = Path(path)
        meta_path = path / "policy.json"
        if not path.is_dir():
            raise VlnavError(f"policy checkpoint not found: {path}")
        if not meta_path.is_file():
            raise VlnavError(f"{path} is not a vlnav policy checkpoint (no policy.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            raise VlnavError(f"{meta_path} is corrupt (not JSON)") from None
        if meta.get("kind") != CHECKPOINT_KIND:
            raise VlnavError(f"{path} is not a vlnav policy checkpoint (kind={meta.get('kind')!r})")
        from vlnav.config import from_dict

        cfg = from_dict(PolicyConfig, meta["policy"], "policy")
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tok = AutoTokenizer.from_pretrained(path / "lm")
            lm = AutoModelForCausalLM.from_pretrained(path / "lm")
        except Exception as e:  # noqa: BLE001 - transformers raises many kinds here
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise VlnavError(f"cannot load the policy LM from {path / 'lm'}: {msg}") from None
        pol = cls(lm, tok, cfg)
        if pol.proj is not None or pol.pointer is not None or pol.stop_head is not None:
            try:
                from safetensors.torch import load_file

                w = load_file(str(path / "heads.safetensors"))
                for name in ("pointer", "proj", "stop_head"):
                    mod = getattr(pol, name)
                    if mod is not None:
                        mod.load_state_dict(
                            {
                                k.split(".", 1)[1]: v
                                for k, v in w.items()
                                if k.startswith(name + ".")
                            }
                        )
            except Exception as e:  # noqa: BLE001
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise VlnavError(f"cannot load {path / 'heads.safetensors'}: {msg}") from None
        pol.eval()
        return pol, meta


def _mixture(moves: torch.Tensor, z: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """The stop head's label log-probabilities: P(stop) = sigmoid(z), P(move k) =
    (1 - P(stop)) * P(k | moving); with no move available Stop is certain (the log-softmax
    over nothing is NaN); with Stop unavailable (the stop gate) P(move k) = P(k | moving)."""
    none = ~avail[..., :-1].any(-1, keepdim=True)
    no_stop = ~avail[..., -1:]  # the stop gate took Stop away: the moves alone
    moving = torch.where(no_stop, 0.0, nn.functional.logsigmoid(-z)[..., None])
    moves = torch.where(none, float("-inf"), moves + moving)
    stop = torch.where(none[..., 0], 0.0, nn.functional.logsigmoid(z))
    stop = torch.where(no_stop[..., 0] & ~none[..., 0], float("-inf"), stop)
    return torch.cat([moves, stop[..., None]], -1)


def _word_level_vocab(tokenizer: Any) -> tuple[dict[str, int], int] | None:
    """(vocabulary, unknown id) when ``tokenizer`` is a word-level one split on whitespace
    alone (``build_tokenizer``'s), so that encoding is a lookup per word; else None."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    try:
        state = json.loads(backend.to_str())
    except Exception:  # noqa: BLE001 - any other tokenizer takes its own path
        return None
    model, pre = state.get("model") or {}, state.get("pre_tokenizer") or {}
    if (
        model.get("type") != "WordLevel"
        or pre.get("type") != "WhitespaceSplit"
        or state.get("normalizer") is not None
    ):
        return None
    vocab = dict(model["vocab"])
    for tok in state.get("added_tokens") or []:
        vocab[tok["content"]] = tok["id"]
    unk = vocab.get(model.get("unk_token", "<unk>"))
    return (vocab, unk) if unk is not None else None


def _takes_cache(lm: Any) -> bool:
    import inspect

    fwd = getattr(lm, "get_base_model", lambda: lm)().forward
    return "cache" in inspect.signature(fwd).parameters


def history_mask(items: list[dict[str, Any]], T: int) -> torch.Tensor:
    """The compact history's attention mask (B, 1, T, T), True where a query (row) sees a key
    (column): causal, over real tokens, and a token with ``until`` >= 0 (a line not chosen)
    only up to that position (its decision's ``<ans>``)."""
    B = len(items)
    until = torch.full((B, T), T, dtype=torch.long)
    valid = torch.zeros((B, T), dtype=torch.bool)
    for i, it in enumerate(items):
        n = len(it["input_ids"])
        u = torch.tensor(it.get("until") or [-1] * n)
        until[i, :n] = torch.where(u >= 0, u, T)
        valid[i, :n] = True
    q = torch.arange(T)[:, None]
    k = torch.arange(T)[None, :]
    allowed = (k <= q)[None] & valid[:, None, :] & (q[None] <= until[:, None, :])
    return allowed[:, None]


def collate(items: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad episode sequences into a batch; flatten their decisions."""
    T = max(len(it["input_ids"]) for it in items)
    B = len(items)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    views = torch.full((B, T), -1, dtype=torch.long)
    steps = torch.full((B, T), -1, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    ans_b, ans_p, targets, avail, labpos, good, regret, dist = [], [], [], [], [], [], [], []
    for i, it in enumerate(items):
        n = len(it["input_ids"])
        ids[i, :n] = torch.tensor(it["input_ids"])
        views[i, :n] = torch.tensor(it["views"])
        steps[i, :n] = torch.tensor(it["steps"])
        mask[i, :n] = 1
        ans_b += [i] * len(it["ans"])
        ans_p += it["ans"]
        targets += it["targets"]
        avail += it["avail"]
        good += it["good"]
        regret += it["regret"]
        dist += it["distance"]
        labpos += it["labpos"]
    batch = {
        "input_ids": ids,
        "views": views,
        "steps": steps,
        "attention_mask": mask,
        "ans_batch": torch.tensor(ans_b),
        "ans_pos": torch.tensor(ans_p),
        "targets": torch.tensor(targets),
        "labpos": torch.tensor(labpos, dtype=torch.long),
        "avail": torch.tensor(avail, dtype=torch.bool),
        "good": torch.tensor(good, dtype=torch.bool),
        "regret": torch.tensor(regret, dtype=torch.float32),
        "distance": torch.tensor(dist, dtype=torch.float32),
    }
    if any(max(it.get("until") or [-1]) >= 0 for it in items):
        batch["attention_4d"] = history_mask(items, T)
    if items[0]["features"] is not None:
        S = max(it["features"].shape[0] for it in items)
        F = items[0]["features"].shape[-1]
        feats = torch.zeros((B, S, 12, F))
        for i, it in enumerate(items):
            feats[i, : it["features"].shape[0]] = torch.from_numpy(it["features"])
        batch["features"] = feats
    return batch
