"""The ``Speaker`` protocol, the registry of speakers by name, and the reply cache wrapper.

A speaker turns requests (a chat for LLMs, the path summary for the template) into texts.
Speakers are chosen by name, ``kind[:argument]``:

=====================  ===============================================  ==================
name                   backend                                          needs
=====================  ===============================================  ==================
``template``           built-in phrase templates, offline, seeded       nothing
``openai:<model>``     an OpenAI-compatible chat-completions server      a server URL
``hf:<id or path>``    a local transformers causal LM, chat template    torch, transformers
=====================  ===============================================  ==================

The registry maps kinds to lazy ``"module:Class"`` strings: nothing is imported until a
speaker is made, and a missing optional dependency fails then, with an install hint.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from vlnav import VlnavError
from vlnav.instruct.cache import ResponseCache, cache_key

if TYPE_CHECKING:
    from vlnav.instruct.config import InstructConfig
    from vlnav.instruct.imagine import TextTrajectory
    from vlnav.instruct.summary import PathSummary

SPEAKERS: dict[str, str] = {
    "template": "vlnav.instruct.template:TemplateSpeaker",
    "openai": "vlnav.instruct.openai_client:OpenAISpeaker",
    "hf": "vlnav.instruct.hf:HFSpeaker",
}


class SpeakerError(VlnavError):
    """A speaker cannot be made or cannot answer (one line naming the cause)."""


@dataclass
class SpeakerRequest:
    """What a speaker is asked for one item.

    ``messages`` is the chat for LLM speakers; ``summary`` (and in imagine mode
    ``trajectory``, the simulator's text trajectory of the item's episode) is what the
    template speaker writes from. ``seed`` varies with the item and the attempt.
    """

    mode: str  # "instruction" | "imagine"
    seed: int
    messages: list[dict[str, str]] = field(default_factory=list)
    summary: PathSummary | None = None
    trajectory: TextTrajectory | None = None


@dataclass
class SpeakerReply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


OnDone = Callable[[int, SpeakerReply], None]


class Speaker(Protocol):
    """Writes one text per request.

    ``generate`` returns replies in request order and calls ``on_done(index, reply)`` as each
    one is ready (from the calling thread), so that callers can save progress; it raises
    :class:`SpeakerError` when a request fails for good.
    """

    name: str  # "openai:gpt-4o-mini"
    model: str
    uses_prompts: bool  # False: ignores ``messages`` (nothing worth caching)

    def params(self, mode: str) -> dict[str, Any]:
        """Generation settings that shape the reply (part of the cache key)."""
        ...

    def generate(
        self, requests: Sequence[SpeakerRequest], on_done: OnDone | None = None
    ) -> list[SpeakerReply]: ...

    def close(self) -> None: ...


def load_entry_point(entry: str) -> Any:
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)


def make_speaker(name: str, config: InstructConfig) -> Speaker:
    """The speaker called ``name`` (``template``, ``openai:<model>``, ``hf:<id or path>``)."""
    kind, _, arg = name.partition(":")
    if kind not in SPEAKERS:
        raise SpeakerError(
            f"unknown speaker {name!r} (choose template, openai:<model> or hf:<id or path>)"
        )
    if kind != "template" and not arg:
        what = "model" if kind == "openai" else "model id or checkpoint path"
        raise SpeakerError(f"speaker {kind!r} needs a {what}: --speaker {kind}:<{what}>")
    return load_entry_point(SPEAKERS[kind])(arg or None, config)


class CachedSpeaker:
    """A speaker whose replies are cached on disk by request hash (resume after a kill)."""

    def __init__(self, inner: Speaker, cache: ResponseCache) -> None:
        self.inner, self.cache = inner, cache
        self.name, self.model, self.uses_prompts = inner.name, inner.model, inner.uses_prompts

    def params(self, mode: str) -> dict[str, Any]:
        return self.inner.params(mode)

    def key(self, request: SpeakerRequest) -> str:
        return cache_key(
            {
                "speaker": self.inner.name,
                "params": self.inner.params(request.mode),
                "messages": request.messages,
                "seed": request.seed,
            }
        )

    def generate(
        self, requests: Sequence[SpeakerRequest], on_done: OnDone | None = None
    ) -> list[SpeakerReply]:
        replies: list[SpeakerReply | None] = [None] * len(requests)
        keys = [self.key(r) for r in requests]
        misses = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key)
            if hit is not None and isinstance(hit.get("text"), str):
                reply = SpeakerReply(
                    hit["text"], hit.get("prompt_tokens", 0), hit.get("completion_tokens", 0), True
                )
                replies[i] = reply
                if on_done:
                    on_done(i, reply)
            else:
                misses.append(i)

        def done(j: int, reply: SpeakerReply) -> None:
            i = misses[j]
            self.cache.put(keys[i], {k: v for k, v in asdict(reply).items() if k != "cached"})
            replies[i] = reply
            if on_done:
                on_done(i, reply)

        if misses:
            got = self.inner.generate([requests[i] for i in misses], done)
            for j, reply in enumerate(got):  # a backend that did not call on_done
                if replies[misses[j]] is None:
                    done(j, reply)
        return [r for r in replies if r is not None]

    def close(self) -> None:
        self.inner.close()
