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


# ------------------------------------------------------------------ rendering domains
# A range is a number (fixed) or [lo, hi]: a value drawn uniformly per episode (per scene when
# no episode is reset), deterministically from (domain.seed, scene, start pose); see
# vlnav/sim/domains.py. Unset (null) leaves that part of the rendering as in domain A.
Range = list[float] | float | None


def check_span(name: str, value: Range, lo: float, hi: float) -> list[float] | None:
    """Normalise a range to ``[a, b]`` with lo <= a <= b <= hi, or raise ConfigError."""
    if value is None:
        return None
    span = [float(value)] * 2 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(span) != 2 or span[0] > span[1]:
        raise ConfigError(f"{name}={value!r} should be a number or a range [lo, hi] with lo <= hi")
    check_range(name, span[0], lo, hi)
    check_range(name, span[1], lo, hi)
    return span


@dataclasses.dataclass
class LightConfig:
    """The directional light and the ambient share; unset fields keep domain A's light."""

    azimuth: Range = None  # degrees, 0 = from -z, positive turns left (like headings)
    elevation: Range = None  # degrees above the horizon (unset: A's direction)
    ambient: Range = None  # share of light that ignores surface orientation (A: 0.45)
    intensity: Range = None  # light (and ambient) multiplier (A: 1)
    warmth: Range = None  # colour temperature: -1 cool/blue .. 0 white .. 1 warm/orange

    def __post_init__(self) -> None:
        self.azimuth = check_span("azimuth", self.azimuth, -360, 360)
        self.elevation = check_span("elevation", self.elevation, 0, 90)
        self.ambient = check_span("ambient", self.ambient, 0, 1)
        self.intensity = check_span("intensity", self.intensity, 0, 4)
        self.warmth = check_span("warmth", self.warmth, -1, 1)
        if (self.azimuth is None) != (self.elevation is None):
            raise ConfigError("azimuth and elevation are set together (or neither)")


@dataclasses.dataclass
class PaletteConfig:
    """A colour transform of every surface colour, before lighting."""

    hue: Range = None  # hue rotation, degrees
    saturation: Range = None  # 0 grey .. 1 as is .. >1 more saturated
    brightness: Range = None  # colour multiplier

    def __post_init__(self) -> None:
        self.hue = check_span("hue", self.hue, -180, 180)
        self.saturation = check_span("saturation", self.saturation, 0, 3)
        self.brightness = check_span("brightness", self.brightness, 0.1, 3)


@dataclasses.dataclass
class NoiseConfig:
    """Sensor effects on RGB, applied in this order: blur, exposure, noise, JPEG."""

    blur_sigma: Range = None  # Gaussian blur sigma (defocus): pixels of a 224-wide image
    exposure: Range = None  # gain on linear intensity: < 1 darker, > 1 brighter
    gamma: Range = None  # tone curve exponent: > 1 brightens mid-tones
    gaussian_std: Range = None  # additive per-pixel noise, fraction of full scale
    jpeg_quality: Range = None  # JPEG round trip at this quality (1-100)

    def __post_init__(self) -> None:
        self.blur_sigma = check_span("blur_sigma", self.blur_sigma, 0, 10)
        self.exposure = check_span("exposure", self.exposure, 0.05, 10)
        self.gamma = check_span("gamma", self.gamma, 0.2, 5)
        self.gaussian_std = check_span("gaussian_std", self.gaussian_std, 0, 0.5)
        self.jpeg_quality = check_span("jpeg_quality", self.jpeg_quality, 1, 100)


@dataclasses.dataclass
class CameraConfig:
    """Shifts of the camera (all sensors): its height above the floor and its field of view."""

    height_jitter: Range = None  # metres added to sensor.camera_height
    hfov_jitter: Range = None  # degrees added to sensor.hfov

    def __post_init__(self) -> None:
        self.height_jitter = check_span("height_jitter", self.height_jitter, -1, 1)
        self.hfov_jitter = check_span("hfov_jitter", self.hfov_jitter, -60, 60)


@dataclasses.dataclass
class DomainConfig:
    """A rendering domain: how RGB looks, as a seed plus named randomisation ranges.

    The default (no ``domain`` section) is domain A: flat colours, one fixed light, no sensor
    effects. Houses, episodes, navigation, depth and instance ids never depend on the domain,
    except that ``camera`` shifts move every sensor.
    """

    name: str = "flat"
    seed: int = 0
    textures: bool = False  # procedural wood / tiles / plaster / fabric / carpet by surface
    texture_contrast: Range = None  # 0 flat .. 1 full pattern strength (default 1)
    texture_scale: Range = None  # pattern size multiplier (default 1)
    palette: PaletteConfig | None = None
    light: LightConfig | None = None
    noise: NoiseConfig | None = None
    camera: CameraConfig | None = None

    def __post_init__(self) -> None:
        check_range("seed", self.seed, 0, 2**32 - 1)
        self.texture_contrast = check_span("texture_contrast", self.texture_contrast, 0, 2)
        self.texture_scale = check_span("texture_scale", self.texture_scale, 0.1, 10)

    @property
    def is_default(self) -> bool:
        """Renders exactly as domain A (the name and seed do not matter then)."""
        return not self.textures and all(
            getattr(self, f) is None for f in ("palette", "light", "noise", "camera")
        )


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
    domain: DomainConfig = dataclasses.field(default_factory=DomainConfig)  # how RGB looks
    habitat: dict[str, Any] = dataclasses.field(default_factory=dict)  # backend-specific

    def __post_init__(self) -> None:
        check_choice("backend", self.backend, ("builtin", "habitat"))
        check_range("grid_cell", self.grid_cell, 0.01, 0.25)
        if self.backend != "builtin" and not self.domain.is_default:
            raise ConfigError(f"domain '{self.domain.name}' needs backend: builtin")
        camera = self.domain.camera
        if camera is not None:
            s = self.sensor
            for jitter in camera.height_jitter or ():
                check_range("domain.camera.height_jitter", s.camera_height + jitter, 0.1, 2.5)
            for jitter in camera.hfov_jitter or ():
                check_range("domain.camera.hfov_jitter", s.hfov + jitter, 10, 170)

    @property
    def scenes_dir(self) -> Path:
        return Path(self.scenes_path.format(data_dir=self.data_dir))

    def episodes_path(self, split: str) -> Path:
        return Path(self.episodes_pattern.format(data_dir=self.data_dir, split=split))
