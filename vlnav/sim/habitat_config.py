"""Every decision of the Habitat backend, as pure functions that run (and are tested) without
habitat-sim. ``vlnav.sim.habitat`` only turns their results into habitat-sim calls.

Written against habitat-sim 0.3.x (read from its source: ``habitat_sim/simulator.py``,
``agent/agent.py``, ``utils/common.py``, ``esp/metadata`` and ``docs/pages/attributesJSON.rst``).

Conventions, and where they differ (each has a function here and a test that fails on the
mistake):

* **Positions** are the same in both: y up, metres, heading 0 looks along -z.
* **Quaternions.** vlnav writes ``[x, y, z, w]``; habitat-sim's ``quat_from_coeffs`` /
  ``quat_to_coeffs`` use the same order ("coeffs", ``[b, c, d, a]`` for ``a + bi + cj + dk``),
  but ``numpy-quaternion`` (``np.quaternion(w, x, y, z)``, ``q.components``) and the
  ``"rotation"`` of a ``*.scene_instance.json`` are ``[w, x, y, z]``, and magnum's
  ``mn.Quaternion(vector, scalar)`` takes ``((x, y, z), w)``.
* **Stage frames.** A bare ``.glb`` stage is read by habitat-sim as an MP3D scan: up = +z,
  front = +y (``StageAttributesManager::setDefaultAssetNameBasedAttributes``), which tips a
  y-up vlnav house onto its side. vlnav's stage config states ``"up": [0, 1, 0]`` and
  ``"front": [0, 0, -1]`` explicitly.
* **Lighting.** A scene with no light setup renders (nearly) black; vlnav's scene instance
  names an explicit light setup (directional lights from above, as habitat's own defaults).

How a procedural house becomes a habitat scene (``habitat_scene_files``,
``write_habitat_scene``): every vlnav instance (floors, ceilings, walls, doorway frames and
furniture) is a STATIC rigid object whose object template carries ``semantic_id`` = the vlnav
instance id, and the stage is a foundation slab under the house that is never visible.

Why rigid objects and not an annotated stage: habitat-sim's semantic sensor reports, per pixel,
the ``semantic_id`` of the scene node that drew it. A stage's nodes all have id 0 unless the
stage comes with a separate semantic mesh (a ``*_semantic.ply`` with per-vertex object ids,
read as z-up, which then replaces the stage in the semantic render and hides rigid objects
from it). Objects get their id from their template (``RigidObject::finalizeObject``), the way
HSSD and ReplicaCAD annotate furniture, so the semantic observation holds vlnav instance ids
for every surface, exactly as the builtin backend's. Each instance's mesh is written in world
coordinates and placed with the identity pose (``"translation_origin": "asset_local"``), so no
per-object transform can go wrong. A stage is still required by habitat-sim; the foundation
(the house's footprint, just below the floor slabs) is hidden under the floors and adds nothing
walkable. The navmesh is recomputed with ``include_static_objects`` so walls and furniture
block the agent, with vlnav's agent radius and height.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlnav import VlnavError
from vlnav.config import ConfigError, EnvConfig
from vlnav.sim.base import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT, AgentState
from vlnav.sim.builtin import find_scene, scene_name

INSTALL_HINT = "conda install habitat-sim withbullet headless -c conda-forge -c aihabitat"
"""How users get habitat-sim (PyPI has no Linux build of it)."""

# habitat-sim's world frame (esp/geo/Geo.h: ESP_UP, ESP_FRONT)
HABITAT_UP = (0.0, 1.0, 0.0)
HABITAT_FRONT = (0.0, 0.0, -1.0)
# the frame vlnav's GLBs are written in (y up, -z front): the identity in habitat's world
VLNAV_UP, VLNAV_FRONT = (0.0, 1.0, 0.0), (0.0, 0.0, -1.0)
# what habitat-sim assumes for a .glb stage without a config (an MP3D scan, gravity -z)
HABITAT_GLB_DEFAULT_UP, HABITAT_GLB_DEFAULT_FRONT = (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)

# VLN-CE's action space: habitat-lab's HabitatSimV1ActionSpaceConfiguration names. STOP is not
# a habitat-sim action (habitat-lab ends the episode without calling the simulator).
ACTION_KEYS: dict[int, str | None] = {
    STOP: None,
    MOVE_FORWARD: "move_forward",
    TURN_LEFT: "turn_left",
    TURN_RIGHT: "turn_right",
}

SENSOR_TYPES = {"rgb": "COLOR", "depth": "DEPTH", "semantic": "SEMANTIC"}  # habitat_sim.SensorType
LIGHT_SETUP = "vlnav_lights"
FOUNDATION = 0.05  # m, thickness of the hidden stage slab under the floors
WRITER_VERSION = 1  # bump when write_habitat_scene's output changes: rewrites stale scenes

R2R_CE_URL = "https://github.com/jacobkrantz/VLN-CE"
MP3D_URL = "https://niessner.github.io/Matterport"


# =============================================================================== quaternions
def _normalised(q: Sequence[float], order: str) -> tuple[float, float, float, float]:
    if len(q) != 4:
        raise VlnavError(f"a quaternion needs 4 numbers {order}, got {list(q)!r}")
    a, b, c, d = (float(v) for v in q)
    n = math.sqrt(a * a + b * b + c * c + d * d)
    if not n > 0 or not math.isfinite(n):
        raise VlnavError(f"{list(q)!r} is not a rotation quaternion")
    return a / n, b / n, c / n, d / n


def to_habitat_coeffs(q_xyzw: Sequence[float]) -> list[float]:
    """vlnav ``[x, y, z, w]`` -> the coeffs that ``habitat_sim.utils.common.quat_from_coeffs``
    takes (the same order, normalised; AgentState.rotation accepts them as a list)."""
    x, y, z, w = _normalised(q_xyzw, "[x, y, z, w]")
    return [x, y, z, w]


def from_habitat_coeffs(coeffs: Sequence[float]) -> list[float]:
    """``quat_to_coeffs(q)`` (``[x, y, z, w]``) -> vlnav ``[x, y, z, w]``, normalised."""
    return to_habitat_coeffs(coeffs)


def xyzw_to_wxyz(q_xyzw: Sequence[float]) -> list[float]:
    """vlnav ``[x, y, z, w]`` -> ``[w, x, y, z]`` (numpy-quaternion, scene-instance JSON)."""
    x, y, z, w = _normalised(q_xyzw, "[x, y, z, w]")
    return [w, x, y, z]


def wxyz_to_xyzw(q_wxyz: Sequence[float]) -> list[float]:
    """``[w, x, y, z]`` (``np.quaternion.components``) -> vlnav ``[x, y, z, w]``."""
    w, x, y, z = _normalised(q_wxyz, "[w, x, y, z]")
    return [x, y, z, w]


def magnum_parts(q_xyzw: Sequence[float]) -> tuple[tuple[float, float, float], float]:
    """Arguments of ``mn.Quaternion(vector, scalar)`` for a vlnav quaternion."""
    x, y, z, w = _normalised(q_xyzw, "[x, y, z, w]")
    return (x, y, z), w


def rotate_wxyz(q_wxyz: Sequence[float], v: Sequence[float]) -> list[float]:
    """Rotate ``v`` by the Hamilton quaternion ``[w, x, y, z]`` (``q v q*``), as
    ``habitat_sim.utils.common.quat_rotate_vector`` does."""
    w, x, y, z = _normalised(q_wxyz, "[w, x, y, z]")
    vx, vy, vz = (float(c) for c in v)
    # t = 2 (u x v), v' = v + w t + u x t, u = (x, y, z)
    tx, ty, tz = 2 * (y * vz - z * vy), 2 * (z * vx - x * vz), 2 * (x * vy - y * vx)
    return [
        vx + w * tx + (y * tz - z * ty),
        vy + w * ty + (z * tx - x * tz),
        vz + w * tz + (x * ty - y * tx),
    ]


def wrap_angle(a: float) -> float:
    """An angle in (-pi, pi], as the builtin backend reports headings."""
    a = math.remainder(float(a), 2 * math.pi)
    return math.pi if a <= -math.pi else a


def heading_from_wxyz(q_wxyz: Sequence[float]) -> float:
    """Yaw in (-pi, pi] of a habitat rotation: the angle about +y of the rotated forward
    vector (0, 0, -1); 0 looks along -z, positive is to the left."""
    fx, _, fz = rotate_wxyz(q_wxyz, HABITAT_FRONT)
    return wrap_angle(math.atan2(-fx, -fz))


# ====================================================================== agent state mapping
def start_state(position: Sequence[float], rotation: Any) -> tuple[list[float], list[float]]:
    """An episode's ``start_position`` / ``start_rotation`` (or a yaw in radians, as the
    builtin backend also accepts) -> ``(position, coeffs)`` for ``habitat_sim.AgentState``."""
    if len(position) != 3:
        raise VlnavError(f"a position needs 3 numbers [x, y, z], got {list(position)!r}")
    p = [float(v) for v in position]
    if isinstance(rotation, (int, float)):
        yaw = float(rotation)
        rotation = [0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2)]
    return p, to_habitat_coeffs(rotation)


def agent_state_from_habitat(
    position: Sequence[float], coeffs: Sequence[float], collided: bool = False
) -> AgentState:
    """A vlnav ``AgentState`` from habitat's agent position and ``quat_to_coeffs(rotation)``."""
    q = from_habitat_coeffs(coeffs)
    return AgentState(
        position=[float(v) for v in position],
        rotation=q,
        heading=heading_from_wxyz(xyzw_to_wxyz(q)),
        collided=bool(collided),
    )


def habitat_action(action: int) -> str | None:
    """vlnav action id -> habitat-sim action key (None for STOP, which does not move)."""
    try:
        return ACTION_KEYS[int(action)]
    except (KeyError, TypeError, ValueError):
        raise VlnavError(f"unknown action {action!r} (expected 0..3)") from None


# ============================================================================ stage frames
def asset_to_world_rotation(up: Sequence[float], front: Sequence[float]) -> np.ndarray:
    """The 3x3 rotation habitat-sim applies to an asset whose config says ``up`` / ``front``:
    it takes the asset's up to +y and its front to -z (and right = front x up to +x)."""
    u = np.asarray(up, dtype=float)
    f = np.asarray(front, dtype=float)
    if u.shape != (3,) or f.shape != (3,) or not np.linalg.norm(u) or not np.linalg.norm(f):
        raise VlnavError(f"up {list(up)} and front {list(front)} must be non-zero 3-vectors")
    u, f = u / np.linalg.norm(u), f / np.linalg.norm(f)
    if abs(float(u @ f)) > 1e-6:
        raise VlnavError(f"up {list(up)} and front {list(front)} must be orthogonal")
    asset = np.column_stack([np.cross(f, u), u, f])
    world = np.column_stack([np.cross(HABITAT_FRONT, HABITAT_UP), HABITAT_UP, HABITAT_FRONT])
    return world @ asset.T


# ================================================================ simulator settings (YAML)
@dataclasses.dataclass(frozen=True)
class SensorSetting:
    """One ``habitat_sim.CameraSensorSpec``."""

    uuid: str  # observation key: "rgb", "depth" or "semantic"
    sensor_type: str  # habitat_sim.SensorType member name
    resolution: tuple[int, int]  # (height, width), habitat's order
    position: tuple[float, float, float]  # relative to the agent's base on the floor
    hfov: float  # degrees


@dataclasses.dataclass(frozen=True)
class HabitatSettings:
    """What ``vlnav.sim.habitat`` passes to habitat-sim, derived from an ``EnvConfig``."""

    sensors: tuple[SensorSetting, ...]
    agent_radius: float
    agent_height: float
    # habitat action key -> (registered control name, ActuationSpec amount)
    actions: dict[str, tuple[str, float]]
    allow_sliding: bool
    recompute_navmesh: bool
    navmesh: dict[str, Any]  # NavMeshSettings attributes
    scene_dataset: str  # "auto": the procedural dataset, mp3d's config if present, or "default"
    enable_physics: bool
    gpu_device_id: int
    random_seed: int
    frustum_culling: bool


HABITAT_KEYS: dict[str, type | tuple[type, ...]] = {
    "allow_sliding": bool,
    "recompute_navmesh": bool,
    "navmesh": dict,
    "scene_dataset": str,
    "enable_physics": bool,
    "gpu_device_id": int,
    "random_seed": int,
    "frustum_culling": bool,
}
"""Keys allowed in an env's ``habitat:`` section, and their types."""

NAVMESH_KEYS = (
    "cell_size",
    "cell_height",
    "agent_max_climb",
    "agent_max_slope",
    "region_min_size",
    "region_merge_size",
    "edge_max_len",
    "edge_max_error",
    "verts_per_poly",
    "detail_sample_dist",
    "detail_sample_max_error",
    "filter_low_hanging_obstacles",
    "filter_ledge_spans",
    "filter_walkable_low_height_spans",
)
"""``habitat_sim.nav.NavMeshSettings`` attributes an env may set under ``habitat.navmesh``
(agent radius and height come from ``agent:``)."""


def habitat_settings(config: EnvConfig, sensors: Iterable[str] | None = None) -> HabitatSettings:
    """Map an env definition to habitat-sim settings; a bad ``habitat:`` key is a ConfigError.

    ``sensors`` (default: the env's) are the observations to render; ``()`` renders none.

    Example:
        >>> s = habitat_settings(EnvConfig())
        >>> s.actions["turn_left"], s.sensors[0].resolution
        (('turn_left', 15.0), (224, 224))
    """
    h = dict(config.habitat)
    for key, value in h.items():
        if key not in HABITAT_KEYS:
            raise ConfigError(
                f"unknown config key 'habitat.{key}' (allowed: {', '.join(sorted(HABITAT_KEYS))})"
            )
        want = HABITAT_KEYS[key]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ConfigError(f"habitat.{key}={value!r} should be {want.__name__}")
    nav = dict(h.get("navmesh", {}))
    for key in nav:
        if key not in NAVMESH_KEYS:
            raise ConfigError(
                f"unknown config key 'habitat.navmesh.{key}' (allowed: {', '.join(NAVMESH_KEYS)})"
            )
    if config.scenes.procedural:
        # flat floors: fine height voxels keep the navmesh (and the camera) at floor level
        nav.setdefault("cell_height", 0.05)
    nav["agent_radius"] = config.agent.radius
    nav["agent_height"] = config.agent.height
    # walls and furniture of procedural houses are STATIC rigid objects
    nav["include_static_objects"] = True

    s, a = config.sensor, config.agent
    names = tuple(s.sensors if sensors is None else sensors)
    for n in names:
        if n not in SENSOR_TYPES:
            raise ConfigError(f"sensor.sensors={n!r} is not one of {list(SENSOR_TYPES)}")
    sensor_settings = tuple(
        SensorSetting(
            uuid=n,
            sensor_type=SENSOR_TYPES[n],
            resolution=(s.height, s.width),
            position=(0.0, s.camera_height, 0.0),
            hfov=s.hfov,
        )
        for n in names
    )
    return HabitatSettings(
        sensors=sensor_settings,
        agent_radius=a.radius,
        agent_height=a.height,
        actions={
            "move_forward": ("move_forward", a.forward_step),
            "turn_left": ("turn_left", a.turn_angle),
            "turn_right": ("turn_right", a.turn_angle),
        },
        allow_sliding=h.get("allow_sliding", True),
        # MP3D ships navmeshes; VLN-CE's published geodesics were computed on them
        recompute_navmesh=h.get("recompute_navmesh", config.scenes.procedural),
        navmesh=nav,
        scene_dataset=h.get("scene_dataset", "auto"),
        enable_physics=h.get("enable_physics", False),
        gpu_device_id=h.get("gpu_device_id", 0),
        random_seed=h.get("random_seed", 0),
        frustum_culling=h.get("frustum_culling", True),
    )


# ============================================================================== observations
def convert_observations(raw: Mapping[str, Any], sensors: Iterable[str]) -> dict[str, np.ndarray]:
    """habitat-sim's observations -> vlnav's: ``rgb`` (H, W, 3) uint8 (habitat gives RGBA),
    ``depth`` (H, W) float32 metres (habitat may add a channel axis), ``semantic`` (H, W)
    int32 (habitat gives uint32)."""
    out: dict[str, np.ndarray] = {}
    for name in sensors:
        a = np.asarray(raw[name])
        if name == "rgb":
            out[name] = np.ascontiguousarray(a[..., :3], dtype=np.uint8)
        elif name == "depth":
            out[name] = np.ascontiguousarray(a.reshape(a.shape[:2]), dtype=np.float32)
        elif name == "semantic":
            out[name] = np.ascontiguousarray(a.reshape(a.shape[:2]).astype(np.int32))
        else:
            raise VlnavError(f"unknown sensor {name!r} (expected rgb, depth or semantic)")
    return out


# ================================================================================= objects
def objects_from_semantic_scene(entries: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """``Simulator.objects()`` for a scanned scene (MP3D) from its semantic annotations.

    ``entries``: one mapping per ``sim.semantic_scene.objects`` item with ``semantic_id``,
    ``category`` (``obj.category.name()``), ``center`` (``obj.aabb.center``) and optionally
    ``region`` (``obj.region.id``) and ``region_category``. Objects without a category or with a
    negative id are skipped; the first object of an id wins.
    """
    out: dict[int, dict[str, Any]] = {}
    for e in entries:
        sid = int(e["semantic_id"])
        category = str(e.get("category") or "").strip().lower()
        if sid < 0 or not category or sid in out:
            continue
        out[sid] = {
            "category": category,
            "colour": None,
            "room": e.get("region"),
            "room_type": e.get("region_category"),
            "position": [float(v) for v in e["center"]],
        }
    return out


# ============================================================================ external data
def r2r_ce_missing(path: Path, data_dir: str) -> str:
    return (
        f"no R2R-CE episodes at {path}: download R2R_VLNCE_v1-3_preprocessed from the VLN-CE "
        f"project ({R2R_CE_URL}) and unzip it into {Path(data_dir) / 'datasets'}"
    )


def mp3d_missing(scenes_dir: Path, what: str) -> str:
    return (
        f"{what}: sign the Matterport3D terms of use ({MP3D_URL}) to get download_mp.py, run "
        f"`python download_mp.py --task habitat -o {scenes_dir}` and unzip so that scenes lie at "
        f"{scenes_dir}/<scene>/<scene>.glb"
    )


def check_external_data(
    config: EnvConfig, split: str | None = None, scenes_dir: str | Path | None = None
) -> None:
    """For an env with ``scenes.procedural: false``, raise a one-line VlnavError that says what
    to download and where it goes when its scenes folder or the split's episodes are missing."""
    if config.scenes.procedural:
        return
    scenes_dir = Path(scenes_dir) if scenes_dir else config.scenes_dir
    if not scenes_dir.is_dir() or not any(scenes_dir.glob("*/*.glb")):
        raise VlnavError(mp3d_missing(scenes_dir, f"no MP3D scenes in {scenes_dir}"))
    if split is not None:
        path = config.episodes_path(split)
        if not path.is_file():
            raise VlnavError(r2r_ce_missing(path, config.data_dir))


def scan_path(scenes_dir: str | Path, scene: str) -> Path:
    """The ``.glb`` of an external (MP3D) scene: ``<scenes_dir>/<name>/<name>.glb``."""
    name = scene_name(scene)
    path = Path(scenes_dir) / name / f"{name}.glb"
    if not path.is_file():
        raise VlnavError(mp3d_missing(Path(scenes_dir), f"scene '{scene}' not found at {path}"))
    return path


# ======================================================== procedural houses as habitat scenes
def object_stem(instance_id: int, category: str) -> str:
    """File stem of an instance's object template: ``obj000012_wall``.

    habitat-sim finds templates by *substring* of their handle, so names are built to be
    unique as substrings: ``objects/obj000012_`` cannot occur inside another instance's path.
    """
    return f"obj{int(instance_id):06d}_{category.replace(' ', '_')}"


def object_template_name(instance_id: int, category: str) -> str:
    """What a scene instance's ``template_name`` says for an instance."""
    return f"objects/{object_stem(instance_id, category)}"


def lighting_config() -> dict[str, Any]:
    """The light setup of procedural houses: directional lights from above, shaped like
    habitat-sim's ``getDefaultLights`` (global frame; ``direction`` is where the light
    travels, so y < 0 shines down), plus one straight down for the floors."""
    lights: dict[str, Any] = {
        "0": {"direction": [0.0, -1.0, 0.0], "intensity": 0.6},
        "1": {"direction": [0.0, -0.5, -0.5], "intensity": 0.35},
        "2": {"direction": [0.0, -0.5, 0.5], "intensity": 0.35},
        "3": {"direction": [-0.5, -0.5, 0.0], "intensity": 0.35},
        "4": {"direction": [0.5, -0.5, 0.0], "intensity": 0.35},
    }
    for light in lights.values():
        light.update({"color": [1.0, 1.0, 1.0], "type": "directional", "position_model": "global"})
    return {"lights": lights, "positive_intensity_scale": 1.0, "negative_intensity_scale": 1.0}


def stage_config(render_asset: str) -> dict[str, Any]:
    """A ``*.stage_config.json`` for a y-up, -z-front vlnav GLB (the frame stated explicitly:
    habitat-sim would read a bare .glb as a z-up scan)."""
    return {
        "render_asset": render_asset,
        "up": list(VLNAV_UP),
        "front": list(VLNAV_FRONT),
        "origin": [0.0, 0.0, 0.0],
        "scale": [1.0, 1.0, 1.0],
        "units_to_meters": 1.0,
        "shader_type": "phong",
        "force_flat_shading": False,
    }


def object_config(render_asset: str, semantic_id: int) -> dict[str, Any]:
    """A ``*.object_config.json`` for one vlnav instance, its mesh in world coordinates.

    ``"COM": [0, 0, 0]`` keeps habitat from re-centring the mesh on its bounding box, so the
    asset's origin is the world origin wherever the object is instanced.
    """
    return {
        "render_asset": render_asset,
        "up": list(VLNAV_UP),
        "front": list(VLNAV_FRONT),
        "scale": [1.0, 1.0, 1.0],
        "units_to_meters": 1.0,
        "COM": [0.0, 0.0, 0.0],
        "semantic_id": int(semantic_id),
        "shader_type": "phong",
        "force_flat_shading": False,
    }


def scene_instance(stage_template: str, object_templates: Sequence[str]) -> dict[str, Any]:
    """A ``*.scene_instance.json``: the stage, every object STATIC at the identity pose
    (rotations here are ``[w, x, y, z]``), the explicit light setup."""
    identity = xyzw_to_wxyz([0.0, 0.0, 0.0, 1.0])  # [1, 0, 0, 0]
    return {
        "stage_instance": {"template_name": stage_template},
        "object_instances": [
            {
                "template_name": t,
                "translation": [0.0, 0.0, 0.0],
                "rotation": identity,
                "motion_type": "STATIC",
                "translation_origin": "asset_local",
            }
            for t in object_templates
        ],
        "translation_origin": "asset_local",
        "default_lighting": f"lights/{LIGHT_SETUP}",
    }


def scene_dataset_config() -> dict[str, Any]:
    """The ``*.scene_dataset_config.json`` that links a house's stage, objects, lights and
    scene instance folders (paths relative to the file)."""
    return {
        "stages": {"paths": {".json": ["stages"]}},
        "objects": {"paths": {".json": ["objects"]}},
        "light_setups": {"paths": {".json": ["lights"]}},
        "scene_instances": {"paths": {".json": ["scenes"]}},
    }


def habitat_scene_files(scene_id: str, instances: Mapping[int, str]) -> dict[str, dict[str, Any]]:
    """The JSON files of one house's habitat scene dataset, by relative path.

    ``instances``: instance id -> category (``SceneSpec.instances()``). Meshes are expected at
    ``stages/<scene_id>_foundation.glb`` and ``objects/<object_stem>.glb``.
    """
    objects = sorted(instances.items())
    files: dict[str, dict[str, Any]] = {
        f"{scene_id}.scene_dataset_config.json": scene_dataset_config(),
        f"stages/{scene_id}.stage_config.json": stage_config(f"{scene_id}_foundation.glb"),
        f"lights/{LIGHT_SETUP}.lighting_config.json": lighting_config(),
        f"scenes/{scene_id}.scene_instance.json": scene_instance(
            f"stages/{scene_id}", [object_template_name(i, c) for i, c in objects]
        ),
    }
    for iid, category in objects:
        stem = object_stem(iid, category)
        files[f"objects/{stem}.object_config.json"] = object_config(f"{stem}.glb", iid)
    return files


@dataclasses.dataclass(frozen=True)
class HabitatScene:
    """Where habitat-sim finds a scene: ``sim_cfg.scene_dataset_config_file`` and
    ``sim_cfg.scene_id``."""

    dataset_config: str
    scene_id: str


def _write_atomic(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return
    tmp = path.with_name(f"tmp-{os.getpid()}-{path.name}")
    tmp.write_bytes(data)
    tmp.replace(path)


def _flat_glb(mesh: Any) -> bytes:
    """GLB bytes of a trimesh with one vertex per face corner and face normals, so that
    habitat's Phong shader lights every face flat (it would otherwise smooth the normals of
    shared box corners), like the builtin renderer."""
    import trimesh

    m = mesh.copy()
    m.unmerge_vertices()
    return trimesh.exchange.gltf.export_glb(trimesh.Scene(m), include_normals=True)


def write_habitat_scene(
    spec: Any, out_dir: str | Path, assets_dir: str | None = None
) -> HabitatScene:
    """Write a procedural house (a ``SceneSpec``) as a habitat-sim scene dataset in ``out_dir``.

    Deterministic, atomic per file and skipped when ``out_dir`` already holds this house
    (a hash of the SceneSpec and ``WRITER_VERSION`` is kept in ``source.sha1``).

    Example:
        >>> scene = write_habitat_scene(spec, "data/procedural/scenes/house_0000/habitat")
        >>> scene.scene_id
        'house_0000'
    """
    from vlnav.scenes.mesh import SLAB, _assemble, _box, build_meshes

    out = Path(out_dir)
    name = spec.scene_id
    dataset = out / f"{name}.scene_dataset_config.json"
    digest = hashlib.sha1(f"{WRITER_VERSION}\n{spec.to_json()}".encode()).hexdigest()
    stamp = out / "source.sha1"
    if dataset.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return HabitatScene(str(dataset.resolve()), name)

    instances = {iid: info["category"] for iid, info in spec.instances().items()}
    for sub in ("stages", "objects", "lights", "scenes"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for iid, mesh in build_meshes(spec, assets_dir):
        glb = out / "objects" / f"{object_stem(iid, instances[iid])}.glb"
        _write_atomic(glb, _flat_glb(mesh))
    x0, z0, x1, z1 = spec.bounds
    foundation = _assemble([_box((x0, -SLAB - FOUNDATION, z0), (x1, -SLAB, z1), (90, 90, 90))])
    _write_atomic(out / "stages" / f"{name}_foundation.glb", _flat_glb(foundation))
    for rel, content in habitat_scene_files(name, instances).items():
        _write_atomic(out / rel, (json.dumps(content, indent=1, sort_keys=True) + "\n").encode())
    _write_atomic(stamp, (digest + "\n").encode())
    return HabitatScene(str(dataset.resolve()), name)


def resolve_scene(
    config: EnvConfig, scene: str, scenes_dir: str | Path | None = None
) -> HabitatScene:
    """Where habitat-sim loads an episode's ``scene_id`` from.

    Procedural envs: the house's habitat dataset (written next to its SceneSpec on first use).
    External envs: the scan's ``.glb`` with ``habitat.scene_dataset`` (``auto``: the
    ``mp3d.scene_dataset_config.json`` in the scenes folder if there is one, else "default").
    """
    settings_dataset = config.habitat.get("scene_dataset", "auto")
    folder = Path(scenes_dir) if scenes_dir else config.scenes_dir
    if config.scenes.procedural:
        from vlnav.scenes.spec import SceneSpec

        spec_path = find_scene(folder, scene)
        spec = SceneSpec.load(spec_path)
        return write_habitat_scene(spec, spec_path.parent / "habitat")
    glb = scan_path(folder, scene)
    dataset = settings_dataset
    if dataset == "auto":
        candidate = folder / "mp3d.scene_dataset_config.json"
        dataset = str(candidate) if candidate.is_file() else "default"
    return HabitatScene(dataset, str(glb))
