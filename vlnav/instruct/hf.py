"""The ``hf:<id or path>`` speaker: a local transformers causal LM with its chat template.

``hf:/path/to/checkpoint`` loads a folder written by ``save_pretrained`` (model and
tokenizer); ``hf:Org/Name`` loads a model from the local Hugging Face cache (nothing is
downloaded unless ``instruct.hf.allow_download`` is true). Prompts are rendered with the
tokenizer's chat template (a plain "System: / User: / Assistant:" layout when it has none)
and generated in left-padded batches of ``instruct.hf.batch_size``, longest prompts
together. Decoding is greedy by default, so a batch gives the same texts however the items
are grouped (a resumed run matches an uninterrupted one); ``temperature > 0`` samples,
seeded per batch.

torch and transformers are imported when the speaker is made, never at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlnav.instruct.config import HFConfig, InstructConfig
from vlnav.instruct.speakers import OnDone, SpeakerError, SpeakerReply, SpeakerRequest


def _one_line(e: BaseException, limit: int = 160) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plain_chat(messages: Sequence[dict[str, str]]) -> str:
    """A chat as plain text, for tokenizers without a chat template."""
    parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(parts) + "\n\nAssistant:"


def resolve_checkpoint(name: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, is it a local folder); one-line errors for paths."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise SpeakerError(f"hf: {path} is a file; expected a checkpoint folder")
        if not (path / "config.json").is_file():
            raise SpeakerError(
                f"hf: {path} is not a transformers checkpoint (no config.json; "
                f"write one with model.save_pretrained and tokenizer.save_pretrained)"
            )
        return str(path), True
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise SpeakerError(f"hf: checkpoint folder not found: {path}")
    return name, False


class HFSpeaker:
    """Speaker over a local transformers causal LM (see the module doc)."""

    uses_prompts = True

    def __init__(self, model: str | None, config: InstructConfig) -> None:
        if not model:
            raise SpeakerError("speaker 'hf' needs a model: --speaker hf:<id or checkpoint path>")
        self.cfg: HFConfig = config.hf
        self.name = f"hf:{model}"
        self.model = model
        try:
            import torch
            import transformers
        except ImportError as e:
            raise SpeakerError(
                f"hf: needs torch and transformers ({e.name} is missing): pip install 'vlnav[llm]'"
            ) from None
        self.torch = torch
        source, local = resolve_checkpoint(model)
        offline = local or not self.cfg.allow_download
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                source, local_files_only=offline
            )
            self.lm = transformers.AutoModelForCausalLM.from_pretrained(
                source, local_files_only=offline, **self._dtype_kwargs(transformers)
            )
        except Exception as e:  # transformers raises many types for a bad or absent checkpoint
            if not local and isinstance(e, OSError):
                raise SpeakerError(
                    f"hf: model {model!r} is not in the local Hugging Face cache "
                    f"(download it first, or set instruct.hf.allow_download=true)"
                ) from None
            raise SpeakerError(
                f"hf: cannot load the checkpoint {source}: {type(e).__name__}: {_one_line(e)}"
            ) from None
        self.device = self._device()
        self.lm.to(self.device).eval()
        tok = self.tokenizer
        if tok.pad_token is None:
            if tok.eos_token is None:
                raise SpeakerError(
                    f"hf: the tokenizer of {source} has neither a pad nor an eos token"
                )
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        self.has_template = bool(getattr(tok, "chat_template", None))
        self.context = getattr(self.lm.config, "max_position_embeddings", None)

    def _dtype_kwargs(self, transformers: Any) -> dict[str, Any]:
        dtype = self.cfg.dtype if self.cfg.dtype == "auto" else getattr(self.torch, self.cfg.dtype)
        major, minor = (int(v) for v in transformers.__version__.split(".")[:2])
        return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}

    def _device(self) -> str:
        if self.cfg.device != "auto":
            return self.cfg.device
        return "cuda" if self.torch.cuda.is_available() else "cpu"

    def params(self, mode: str) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": self.cfg.temperature,
            "top_p": self.cfg.top_p,
            "max_new_tokens": self.cfg.imagine_max_new_tokens
            if mode == "imagine"
            else self.cfg.max_new_tokens,
        }

    def render(self, messages: Sequence[dict[str, str]]) -> str:
        """The prompt text of a chat (chat template, or the plain layout)."""
        if self.has_template:
            return self.tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=True
            )
        return plain_chat(messages)

    def _batch(self, requests: Sequence[SpeakerRequest]) -> list[SpeakerReply]:
        torch, tok = self.torch, self.tokenizer
        max_new = self.params(requests[0].mode)["max_new_tokens"]
        enc = tok(
            [self.render(r.messages) for r in requests],
            return_tensors="pt",
            padding=True,
            add_special_tokens=not self.has_template,  # the template writes BOS itself
        )
        n_in = enc["input_ids"].shape[1]  # (B, T)
        if self.context and n_in + max_new > self.context:
            raise SpeakerError(
                f"hf: a prompt of {n_in} tokens plus {max_new} new tokens exceeds the context of "
                f"{self.model} ({self.context}); lower instruct.few_shot or the max new tokens"
            )
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": tok.pad_token_id}
        if self.cfg.temperature > 0:
            torch.manual_seed(requests[0].seed)
            kwargs.update(do_sample=True, temperature=self.cfg.temperature, top_p=self.cfg.top_p)
        else:
            kwargs.update(do_sample=False)
        with torch.inference_mode():
            out = self.lm.generate(**enc, **kwargs)  # (B, T + new)
        new = out[:, n_in:].cpu()
        stops = {t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None}
        replies = []
        for i in range(len(requests)):
            ids = new[i].tolist()
            n = next((k for k, t in enumerate(ids) if t in stops), len(ids))
            replies.append(
                SpeakerReply(
                    tok.decode(ids[:n], skip_special_tokens=True).strip(),
                    prompt_tokens=int(enc["attention_mask"][i].sum()),
                    completion_tokens=n,
                )
            )
        return replies

    def generate(
        self, requests: Sequence[SpeakerRequest], on_done: OnDone | None = None
    ) -> list[SpeakerReply]:
        """Replies in request order; batches group prompts of similar length."""
        replies: list[SpeakerReply | None] = [None] * len(requests)
        order = sorted(
            range(len(requests)),
            key=lambda i: -sum(len(m["content"]) for m in requests[i].messages),
        )
        bs = self.cfg.batch_size
        for b in range(0, len(order), bs):
            idx = order[b : b + bs]
            for i, reply in zip(idx, self._batch([requests[i] for i in idx])):
                replies[i] = reply
                if on_done:
                    on_done(i, reply)
        return [r for r in replies if r is not None]

    def close(self) -> None:
        self.lm = None
