"""The Captioner protocol, its data types and the registry of captioners by name."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vlnav import VlnavError


@dataclass
class View:
    """One egocentric view. Pixel captioners read ``rgb``; ``semantic`` also reads the
    instance ids, depth and the scene's ``objects`` (instance id -> category, colour, room)."""

    rgb: np.ndarray | None = None  # (H, W, 3) uint8
    depth: np.ndarray | None = None  # (H, W) float32 metres
    semantic: np.ndarray | None = None  # (H, W) int32 instance ids
    objects: dict[int, dict[str, Any]] | None = None
    rooms: dict[int, str] | None = None  # room id -> room type
    hfov: float = 90.0
    reach: float | None = None  # metres a move in this view walks (its waypoint), if known


@dataclass
class Mention:
    """An object named in a caption, with where it is."""

    category: str
    colour: str | None = None
    distance: float | None = None  # metres
    side: str | None = None  # left | ahead | right
    instance_id: int | None = None

    @property
    def name(self) -> str:
        return f"{self.colour} {self.category}" if self.colour else self.category

    def detail(self) -> str:
        parts = [self.name]
        where = []
        if self.distance is not None:
            where.append(f"{self.distance:.0f} m" if self.distance >= 1.5 else "close")
        if self.side:
            where.append(self.side)
        return parts[0] + (f" ({', '.join(where)})" if where else "")


@dataclass
class Caption:
    """Two levels, as in LangNav: a one-sentence global caption and object details."""

    text: str
    mentions: list[Mention] = field(default_factory=list)
    room: str | None = None
    doorway: bool = False
    beyond: str | None = None  # the room type seen through the doorway, when another
    dest: str | None = None  # the room type of the floor where this view's move ends
    more: list[Mention] = field(default_factory=list)  # further objects, not in the text

    def details(self) -> list[str]:
        return [m.detail() for m in self.mentions]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "room": self.room,
            "doorway": self.doorway,
            "mentions": [m.__dict__ for m in self.mentions],
            **({"beyond": self.beyond} if self.beyond else {}),
            **({"dest": self.dest} if self.dest else {}),
            **({"more": [m.__dict__ for m in self.more]} if self.more else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Caption:
        return cls(
            text=d["text"],
            room=d.get("room"),
            doorway=bool(d.get("doorway", False)),
            mentions=[Mention(**m) for m in d.get("mentions", [])],
            beyond=d.get("beyond"),
            dest=d.get("dest"),
            more=[Mention(**m) for m in d.get("more", [])],
        )


@runtime_checkable
class Captioner(Protocol):
    name: str
    needs: tuple[str, ...]  # sensors it reads: ("rgb",) or ("semantic", "depth")

    @property
    def identity(self) -> str:
        """Changes whenever its output could change (weights, settings): the cache key."""
        ...

    def caption(self, views: list[View]) -> list[Caption]: ...


class BlankCaptioner:
    """``none``: every view's caption is empty, so a policy sees only the candidates' labels
    (and, when fused, their visual features): the "features only" input of transfer runs."""

    name = "none"
    needs: tuple[str, ...] = ()
    cheap_to_build = True
    identity = "none"

    def caption(self, views: list[View]) -> list[Caption]:
        return [Caption("") for _ in views]


CAPTIONERS: dict[str, str] = {
    "none": "vlnav.perception.base:BlankCaptioner",
    "semantic": "vlnav.perception.semantic:SemanticCaptioner",
    "learned": "vlnav.perception.learned:LearnedCaptioner",
    "hf": "vlnav.perception.pretrained:HFCaptioner",
    "open_clip": "vlnav.perception.pretrained:OpenClipCaptioner",
}


def make_captioner(spec: str, **kwargs: Any) -> Captioner:
    """``semantic``, ``learned:<checkpoint>``, ``hf:<model id or path>``, ``open_clip:<model>``,
    ``none`` (empty captions)."""
    ctor = _captioner_class(spec, kwargs)
    _, _, arg = spec.partition(":")
    return ctor(arg, **kwargs) if arg else ctor(**kwargs)


def check_captioner(spec: str, kwargs: dict[str, Any]) -> None:
    """Raise a one-line error for an unknown captioner, a missing dependency, an unknown
    option or (captioners marked ``cheap_to_build``) a bad value, without loading a model:
    configs call it when they are read, before any worker process starts."""
    ctor = _captioner_class(spec, kwargs)
    if getattr(ctor, "cheap_to_build", False):  # builds nothing heavy: check its values too
        ctor(**kwargs)


def _captioner_class(spec: str, kwargs: dict[str, Any]) -> Any:
    name = spec.partition(":")[0]
    if name not in CAPTIONERS:
        raise VlnavError(f"unknown captioner '{spec}' (known: {', '.join(CAPTIONERS)})")
    module, cls = CAPTIONERS[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise VlnavError(
            f"captioner '{name}' needs a missing dependency ({e.name}): pip install -e '.[llm]'"
        ) from None
    ctor = getattr(mod, cls)
    params = inspect.signature(ctor).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = list(params)
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            from vlnav.config import ConfigError

            raise ConfigError(
                f"{unknown[0]}: the '{name}' captioner has no such option "
                f"(options: {', '.join(known)})"
            )
    return ctor
