"""Rendering domains: how the builtin simulator's RGB looks, as a seed plus named ranges.

A domain (``EnvConfig.domain``, the ``domain:`` section of ``envs/*.yaml``) changes only the
RGB images of the same houses and episodes, for sim-to-real (domain transfer) experiments:

* ``procedural`` (A, ``envs/procedural.yaml``): flat colours, one white light. The default.
* ``procedural-textured`` (B): procedural wood, tiles, plaster, fabric and carpet computed in
  the fragment shader from world position and normal (no texture files), another palette
  and a coloured light from another direction.
* ``procedural-noisy`` (C): A's surfaces seen through a worse camera: blur, exposure and
  tone, Gaussian noise, JPEG, and a camera shifted in height and field of view.

Each range ``[lo, hi]`` is drawn uniformly once per episode, deterministically from
``(domain.seed, scene, start position, start heading)`` (:func:`sample_params`), so an
episode looks the same in every run, worker and process; frames taken without an episode
(``load_scene`` then ``set_agent_state``) use a draw per scene. Sensor noise is drawn per
view from the episode's draw and the camera pose, so one pose always gives one image.

Depth and instance ids never depend on the domain, except through ``camera`` shifts (which
move every sensor). The sensor effects are pure functions of uint8 RGB images.

Example:
    >>> from vlnav.config import DomainConfig, NoiseConfig
    >>> domain = DomainConfig(name="noisy", noise=NoiseConfig(blur_sigma=[0.5, 1.5]))
    >>> params = sample_params(domain, "house_0000", [1.0, 0.0, 2.0], 0.0)
    >>> 0.5 <= params.blur_sigma <= 1.5
    True
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vlnav.config import DomainConfig

if TYPE_CHECKING:
    from vlnav.scenes.spec import SceneSpec
    from vlnav.sim.render import Shading

# Surface materials of the procedural textures (codes read by the fragment shader).
MATERIALS = {"smooth": 0, "plaster": 1, "wood": 2, "tiles": 3, "fabric": 4, "carpet": 5}
FABRIC_CATEGORIES = frozenset({"sofa", "armchair", "bed", "office chair"})
WOOD_COLOURS = frozenset({"light brown", "brown", "dark brown"})
# Blur sigmas are given in pixels of an image this wide (VLN-CE's 224) and scaled with the
# image's width, so a domain blurs alike at every sensor resolution.
REFERENCE_WIDTH = 224


# ------------------------------------------------------------------- sampled values
@dataclasses.dataclass(frozen=True)
class DomainParams:
    """One draw of a domain's ranges: the values one episode is rendered with.

    The defaults are domain A's (nothing changes); ``None`` light fields keep the
    renderer's own light.
    """

    light_azimuth: float | None = None  # degrees
    light_elevation: float | None = None  # degrees
    ambient: float | None = None
    intensity: float = 1.0
    warmth: float = 0.0
    hue: float = 0.0  # degrees
    saturation: float = 1.0
    brightness: float = 1.0
    texture_contrast: float = 1.0
    texture_scale: float = 1.0
    blur_sigma: float = 0.0
    exposure: float = 1.0
    gamma: float = 1.0
    gaussian_std: float = 0.0
    jpeg_quality: int | None = None
    camera_height_shift: float = 0.0  # metres
    hfov_shift: float = 0.0  # degrees
    noise_seed: int = 0  # seeds the per-view sensor noise

    @property
    def has_sensor_effects(self) -> bool:
        return (
            self.blur_sigma > 0
            or self.exposure != 1.0
            or self.gamma != 1.0
            or self.gaussian_std > 0
            or self.jpeg_quality is not None
        )


# The order in which ranges are drawn: never reorder (it would change every draw).
_DRAWS: tuple[tuple[str, str, str], ...] = (
    ("light", "azimuth", "light_azimuth"),
    ("light", "elevation", "light_elevation"),
    ("light", "ambient", "ambient"),
    ("light", "intensity", "intensity"),
    ("light", "warmth", "warmth"),
    ("palette", "hue", "hue"),
    ("palette", "saturation", "saturation"),
    ("palette", "brightness", "brightness"),
    ("", "texture_contrast", "texture_contrast"),
    ("", "texture_scale", "texture_scale"),
    ("noise", "blur_sigma", "blur_sigma"),
    ("noise", "exposure", "exposure"),
    ("noise", "gamma", "gamma"),
    ("noise", "gaussian_std", "gaussian_std"),
    ("noise", "jpeg_quality", "jpeg_quality"),
    ("camera", "height_jitter", "camera_height_shift"),
    ("camera", "hfov_jitter", "hfov_shift"),
)


def episode_key(scene: str, position: Sequence[float] | None = None, heading: float = 0.0) -> int:
    """A 32-bit key of an episode's start (scene, position to the mm, heading to 0.1 deg),
    or of the scene alone when ``position`` is None."""
    text = scene
    if position is not None:
        x, z = float(position[0]), float(position[2])
        text += f"|{x:.3f}|{z:.3f}|{math.degrees(heading) % 360.0:.1f}"
    return zlib.crc32(text.encode())


def sample_params(
    domain: DomainConfig,
    scene: str,
    position: Sequence[float] | None = None,
    heading: float = 0.0,
) -> DomainParams:
    """Draw the domain's ranges for an episode starting at ``position`` / ``heading`` in
    ``scene`` (for the scene alone when ``position`` is None). Deterministic."""
    rng = np.random.default_rng([domain.seed, episode_key(scene, position, heading)])
    values: dict[str, Any] = {}
    for section, name, field in _DRAWS:
        draw = float(rng.random())  # always drawn, so a new range does not shift the others
        owner = getattr(domain, section) if section else domain
        span = getattr(owner, name) if owner is not None else None
        if span is not None:
            values[field] = span[0] + draw * (span[1] - span[0])
    if "jpeg_quality" in values:
        values["jpeg_quality"] = int(round(values["jpeg_quality"]))
    values["noise_seed"] = int(rng.integers(2**31))
    return DomainParams(**values)


def is_randomised(domain: DomainConfig) -> bool:
    """Whether any range of the domain is wider than a point (draws differ per episode)."""
    for section, name, _ in _DRAWS:
        owner = getattr(domain, section) if section else domain
        span = getattr(owner, name) if owner is not None else None
        if span is not None and span[0] != span[1]:
            return True
    return False


def domain_identity(domain: DomainConfig) -> str:
    """A short, stable name of the domain's settings ("" for domain A), for caches."""
    if domain.is_default:
        return ""
    text = repr(dataclasses.asdict(domain))
    return f"{domain.name}-{zlib.crc32(text.encode()):08x}"


# ------------------------------------------------------------------- shading
def light_direction(azimuth: float, elevation: float) -> tuple[float, float, float]:
    """Unit vector towards a light at ``azimuth`` degrees (0 along -z, positive turning
    left, like headings) and ``elevation`` degrees above the horizon."""
    az, el = math.radians(azimuth), math.radians(elevation)
    return (-math.sin(az) * math.cos(el), math.sin(el), -math.cos(az) * math.cos(el))


def colour_matrix(hue: float = 0.0, saturation: float = 1.0, brightness: float = 1.0) -> np.ndarray:
    """3 x 3 RGB transform: rotate hues by ``hue`` degrees about the grey axis, scale the
    saturation (0 grey) around Rec. 601 luma, then multiply by ``brightness``."""
    c, s = math.cos(math.radians(hue)), math.sin(math.radians(hue))
    third, root = (1.0 - c) / 3.0, math.sqrt(1.0 / 3.0) * s
    rotate = np.array(
        [
            [c + third, third - root, third + root],
            [third + root, c + third, third - root],
            [third - root, third + root, c + third],
        ]
    )
    luma = np.array([0.299, 0.587, 0.114])
    saturate = saturation * np.eye(3) + (1.0 - saturation) * np.tile(luma, (3, 1))
    return brightness * saturate @ rotate


def warm_light(warmth: float, intensity: float = 1.0) -> tuple[float, float, float]:
    """RGB of a light of colour temperature ``warmth`` (-1 blue, 0 white, 1 orange)."""
    return (
        intensity * (1.0 + 0.15 * warmth),
        intensity * (1.0 + 0.02 * warmth),
        intensity * (1.0 - 0.3 * warmth),
    )


def shading(params: DomainParams, textures: bool) -> Shading:
    """The renderer's ``Shading`` for one draw (``Shading()`` itself for domain A's)."""
    from vlnav.sim.render import Shading

    base = Shading()
    light = base.light_dir
    if params.light_azimuth is not None and params.light_elevation is not None:
        light = light_direction(params.light_azimuth, params.light_elevation)
    matrix = base.colour_matrix
    if (params.hue, params.saturation, params.brightness) != (0.0, 1.0, 1.0):
        m = colour_matrix(params.hue, params.saturation, params.brightness)
        matrix = tuple(float(v) for v in m.reshape(-1))
    light_rgb = base.light_rgb
    if (params.warmth, params.intensity) != (0.0, 1.0):
        light_rgb = warm_light(params.warmth, params.intensity)
    return Shading(
        light_dir=light,
        ambient=base.ambient if params.ambient is None else params.ambient,
        light_rgb=light_rgb,
        colour_matrix=matrix,
        textures=textures,
        texture_contrast=params.texture_contrast,
        texture_scale=params.texture_scale,
    )


def vertex_materials(spec: SceneSpec, ids: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Material code (``MATERIALS``) of each vertex of a house's triangle soup.

    Walls and ceilings are plaster; a floor is wood, tiles or carpet as its room's floor
    colour is named (``room_colours``); door frames wood (the wall above a door plaster);
    sofas, armchairs, beds and office chairs fabric; brown furniture wood; the rest smooth.

    Args:
        spec: the house.
        ids: (N,) instance id of each vertex; colors: (N, 3) its colour in [0, 1].
    """
    from vlnav.scenes.mesh import DOOR_FRAME_RGB, room_colours

    instances = spec.instances()
    lut = np.zeros(max(max(instances, default=0), int(ids.max(initial=0))) + 1, np.int32)
    rooms = {r.id: r for r in spec.rooms}
    doorways = []
    for iid, info in instances.items():
        cat = info["category"]
        if cat in ("wall", "ceiling"):
            material = "plaster"
        elif cat == "floor":
            floor = room_colours(spec, rooms[info["room"]]).floor
            material = next((m for m in ("wood", "tile", "carpet") if m in floor), "smooth")
            material = "tiles" if material == "tile" else material
        elif cat == "doorway":
            material = "plaster"
            doorways.append(iid)
        elif cat in FABRIC_CATEGORIES:
            material = "fabric"
        elif info.get("colour") in WOOD_COLOURS:
            material = "wood"
        else:
            material = "smooth"
        lut[iid] = MATERIALS[material]
    out = lut[ids]
    if doorways:
        frame = np.abs(colors - np.asarray(DOOR_FRAME_RGB) / 255.0).max(axis=1) < 1.5 / 255
        out[np.isin(ids, doorways) & frame] = MATERIALS["wood"]
    return out


# ------------------------------------------------------------------- sensor effects
def gaussian_blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Blur an (H, W, 3) uint8 image with a Gaussian of ``sigma`` pixels (defocus)."""
    import cv2

    if sigma <= 0:
        return rgb.copy()
    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)


def adjust_exposure(rgb: np.ndarray, exposure: float = 1.0, gamma: float = 1.0) -> np.ndarray:
    """Scale the linear light of an sRGB-like uint8 image by ``exposure`` (> 1 brighter,
    clipping highlights) and apply a tone curve ``x ** (1 / gamma)`` (> 1 lifts mid-tones)."""
    import cv2

    return cv2.LUT(rgb, _exposure_lut(float(exposure), float(gamma)))


@functools.lru_cache(maxsize=64)
def _exposure_lut(exposure: float, gamma: float) -> np.ndarray:
    x = np.arange(256, dtype=np.float64) / 255.0
    linear = np.clip(x**2.2 * exposure, 0.0, 1.0)
    return np.rint(255.0 * linear ** (1.0 / (2.2 * gamma))).astype(np.uint8)


def add_gaussian_noise(rgb: np.ndarray, std: float, seed: Sequence[int] | int) -> np.ndarray:
    """Add zero-mean Gaussian noise of ``std`` (a fraction of full scale) to every pixel and
    channel of an (H, W, 3) uint8 image; the same ``seed`` gives the same noise.

    OpenCV's generator (seeded here, four times faster than numpy's normals) draws it.
    """
    import cv2

    if std <= 0:
        return rgb.copy()
    key = np.atleast_1d(np.asarray(seed, dtype=np.uint64)).tobytes()
    cv2.setRNGSeed(zlib.crc32(key) & 0x7FFFFFFF)
    noise = np.empty(rgb.shape, np.float32)
    sigma = 255.0 * float(std)
    cv2.randn(noise, (0.0,) * rgb.shape[-1], (sigma,) * rgb.shape[-1])
    return cv2.addWeighted(rgb, 1.0, noise, 1.0, 0.0, dtype=cv2.CV_8U)  # rounds, saturates


def jpeg_compress(rgb: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG round trip at ``quality`` (1-100) of an (H, W, 3) uint8 RGB image."""
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # OpenCV's channel order
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 images
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def sensor_effects(rgb: np.ndarray, params: DomainParams, seed: Sequence[int] | int) -> np.ndarray:
    """Apply a draw's sensor effects to one (H, W, 3) uint8 view, in camera order: blur
    (optics; ``blur_sigma`` is in pixels at ``REFERENCE_WIDTH``), exposure and tone, noise
    (sensor, drawn from ``seed``), JPEG."""
    out = rgb
    if params.blur_sigma > 0:
        out = gaussian_blur(out, params.blur_sigma * rgb.shape[1] / REFERENCE_WIDTH)
    if params.exposure != 1.0 or params.gamma != 1.0:
        out = adjust_exposure(out, params.exposure, params.gamma)
    if params.gaussian_std > 0:
        out = add_gaussian_noise(out, params.gaussian_std, seed)
    if params.jpeg_quality is not None:
        out = jpeg_compress(out, params.jpeg_quality)
    return out


def view_seed(params: DomainParams, eye: Sequence[float], yaw: float) -> list[int]:
    """The noise seed of one view: the episode's draw and the camera pose (cm, 0.1 deg)."""
    pose = f"{eye[0]:.2f}|{eye[1]:.2f}|{eye[2]:.2f}|{math.degrees(yaw) % 360.0:.1f}"
    return [params.noise_seed, zlib.crc32(pose.encode())]


# ------------------------------------------------------------------- figure
def compare_figure(
    env_files: Sequence[str | Path],
    scene: str | None = None,
    position: Sequence[float] | None = None,
    heading: float = 0.0,
    out: str | Path = "runs/domains.png",
    size: int = 224,
    data_dir: str | None = None,
) -> Path:
    """Render the same pose in each environment's domain, side by side, and save a PNG.

    Without ``scene`` and ``position``, the start of the first ``val_unseen`` episode of the
    first environment is used. Each panel is labelled with its environment's name.

    Example:
        >>> compare_figure(["envs/procedural.yaml", "envs/procedural-textured.yaml",
        ...                 "envs/procedural-noisy.yaml"])  # doctest: +SKIP
        PosixPath('runs/domains.png')
    """
    import cv2

    from vlnav.config import EnvConfig, load_config
    from vlnav.episodes import load_episodes, quaternion_to_yaw, yaw_to_quaternion
    from vlnav.sim.builtin import BuiltinSimulator

    overrides = [f"sensor.width={size}", f"sensor.height={size}"]
    if data_dir is not None:
        overrides.append(f"data_dir={data_dir}")
    configs = [load_config(EnvConfig, f, overrides) for f in env_files]
    if scene is None or position is None:
        ep = load_episodes(configs[0].episodes_path("val_unseen")).episodes[0]
        scene, position = ep.scene_id, ep.start_position
        heading = quaternion_to_yaw(ep.start_rotation)
    panels = []
    for cfg in configs:
        sim = BuiltinSimulator(cfg, sensors=("rgb",))
        try:
            rgb = sim.reset(scene, position, yaw_to_quaternion(heading))["rgb"]
        finally:
            sim.close()
        panel = np.full((size + 28, size, 3), 255, np.uint8)
        panel[28:] = rgb
        cv2.putText(panel, cfg.name, (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        panels.append(panel)
    gap = np.full((size + 28, 6, 3), 255, np.uint8)
    figure = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), figure[..., ::-1])
    return out
