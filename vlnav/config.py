"""Typed, nested configuration dataclasses loaded from YAML, with dotted overrides.

Every config is a dataclass; ``load_config(cls, path, overrides)`` builds it from a YAML file
and ``["sensor.width=128", ...]`` overrides, and rejects unknown keys and bad values with a
one-line :class:`ConfigError` naming the key. Validation of ranges lives in each dataclass's
``__post_init__`` (raise ``ConfigError``).

Example:
    >>> cfg = load_config(EnvConfig, "envs/procedural.yaml", ["sensor.width=128"])
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vlnav import VlnavError

T = TypeVar("T")


class ConfigError(VlnavError):
    """A configuration file or override is invalid."""


def check_range(name: str, value: float, lo: float | None = None, hi: float | None = None) -> None:
    """Raise ConfigError unless lo <= value <= hi."""
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ConfigError(f"{name}={value!r} is out of range [{lo_s}, {hi_s}]")


def check_choice(name: str, value: Any, choices: typing.Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {choices}")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(
                f"unknown config key '{dotted}' (allowed: {', '.join(sorted(fields))})"
            )
        kwargs[key] = _coerce(hints[key], value, dotted)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        # __post_init__ names the field only; prefix the section it belongs to
        if where:
            raise ConfigError(f"{where}.{e}") from None
        raise


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        last: Exception | None = None
        for a in inner:
            try:
                return _coerce(a, value, where)
            except ConfigError as e:
                last = e
        raise last or ConfigError(f"{where}: bad value {value!r}")
    if tp is Any:
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}={value!r} should be a list")
        sub = args[0] if args else Any
        out = [_coerce(sub, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return out if origin is list else tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}={value!r} should be a mapping")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}={value!r} should be true or false")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}={value!r} should be a number")
        try:
            v = float(value) if tp is float else int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}={value!r} should be {tp.__name__}") from None
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}={value!r} should be an integer")
        return v
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}={value!r} should be a string")
        return str(value)
    return value


def apply_overrides(data: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML scalars) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' should look like key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{p}' is not a section")
        node[parts[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{at}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: typing.Sequence[str] = ()
) -> T:
    data = read_yaml(path) if path else {}
    data = apply_overrides(data, overrides)
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# --------------------------------------------------------------------------- env configs
SENSOR_NAMES = ("rgb", "depth", "semantic")


@dataclasses.dataclass
class SensorConfig:
    width: int = 224
    height: int = 224
    hfov: float = 90.0
    camera_height: float = 1.25
    sensors: list[str] = dataclasses.field(default_factory=lambda: list(SENSOR_NAMES))

    def __post_init__(self) -> None:
        check_range("width", self.width, 8, 4096)
        check_range("height", self.height, 8, 4096)
        check_range("hfov", self.hfov, 10, 170)
        check_range("camera_height", self.camera_height, 0.1, 2.5)
        for s in self.sensors:
            check_choice("sensors", s, SENSOR_NAMES)


@dataclasses.dataclass
class AgentConfig:
    radius: float = 0.18  # VLN-CE's R2R agent
    height: float = 0.88
    forward_step: float = 0.25
    turn_angle: float = 15.0
    max_steps: int = 500

    def __post_init__(self) -> None:
        check_range("radius", self.radius, 0.05, 0.5)
        check_range("height", self.height, 0.2, 2.5)
        check_range("forward_step", self.forward_step, 0.01, 2.0)
        check_range("turn_angle", self.turn_angle, 1.0, 180.0)
        check_range("max_steps", self.max_steps, 1, 100000)


@dataclasses.dataclass
class ScenesConfig:
    """Which houses: generated with ``seed`` (train houses first, then val_unseen houses)."""

    procedural: bool = True  # False: scenes come from a dataset the user downloads (MP3D)
    train: int = 10
    val_unseen: int = 5
    seed: int = 0
    generator: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_range("train", self.train, 1, 100000)
        check_range("val_unseen", self.val_unseen, 0, 100000)


@dataclasses.dataclass
class EpisodesConfig:
    """R2R-like episode sampling per split (episodes per house)."""

    train_per_scene: int = 60
    val_seen_per_scene: int = 5
    val_unseen_per_scene: int = 100
    min_geodesic: float = 5.0
    max_geodesic: float = 20.0
    success_radius: float = 3.0
    seed: int = 0
    # who writes the instructions of sampled episodes: "template" (the built-in speaker of
    # vlnav.instruct), an LLM ("openai:<model>" with $VLNAV_OPENAI_BASE_URL, "hf:<id or
    # path>") or "route" (a bare list of the rooms passed)
    speaker: str = "template"

    def __post_init__(self) -> None:
        if self.speaker not in ("template", "route") and self.speaker.partition(":")[0] not in (
            "openai",
            "hf",
        ):
            raise ConfigError(
                f"speaker={self.speaker!r} is not one of template, route, openai:<model>, "
                "hf:<id or path>"
            )
        for name in ("train_per_scene", "val_seen_per_scene", "val_unseen_per_scene"):
            check_range(name, getattr(self, name), 0, 100000)
        check_range("min_geodesic", self.min_geodesic, 0.5, 100)
        check_range("max_geodesic", self.max_geodesic, self.min_geodesic, 200)
        check_range("success_radius", self.success_radius, 0.1, 10)


@dataclasses.dataclass
class EnvConfig:
    """An environment definition (``envs/*.yaml``): the *where* of an experiment."""

    name: str = "procedural"
    backend: str = "builtin"
    data_dir: str = "data/procedural"
    grid_cell: float = 0.05
    sensor: SensorConfig = dataclasses.field(default_factory=SensorConfig)
    agent: AgentConfig = dataclasses.field(default_factory=AgentConfig)
    scenes: ScenesConfig = dataclasses.field(default_factory=ScenesConfig)
    episodes: EpisodesConfig = dataclasses.field(default_factory=EpisodesConfig)
    # where scenes and episodes live; "{data_dir}" and "{split}" are filled in
    scenes_path: str = "{data_dir}/scenes"
    episodes_pattern: str = "{data_dir}/episodes/{split}/{split}.json.gz"
    domain: dict[str, Any] = dataclasses.field(default_factory=dict)
    habitat: dict[str, Any] = dataclasses.field(default_factory=dict)  # backend-specific

    def __post_init__(self) -> None:
        check_choice("backend", self.backend, ("builtin", "habitat"))
        check_range("grid_cell", self.grid_cell, 0.01, 0.25)

    @property
    def scenes_dir(self) -> Path:
        return Path(self.scenes_path.format(data_dir=self.data_dir))

    def episodes_path(self, split: str) -> Path:
        return Path(self.episodes_pattern.format(data_dir=self.data_dir, split=split))
