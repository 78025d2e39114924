"""The builtin backend: procedural houses, offscreen OpenGL (EGL/llvmpipe), a navigation grid.

Runs anywhere with Mesa's EGL: no GPU, no display, no download. One instance owns one GL
context, bound to the thread that created it; worker processes must be started with the
``spawn`` method (a process forked after a GL context exists hangs).

The env's rendering domain (``config.domain``, ``vlnav.sim.domains``) is drawn at every
``reset`` (per episode) and when a new scene is loaded, and applied to every RGB image that
``observe`` and ``panorama`` return.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vlnav import VlnavError
from vlnav.config import EnvConfig
from vlnav.episodes import quaternion_to_yaw, yaw_to_quaternion
from vlnav.scenes.spec import SceneSpec
from vlnav.sim.base import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT, AgentState
from vlnav.sim.domains import (
    DomainParams,
    domain_identity,
    episode_key,
    is_randomised,
    sample_params,
    sensor_effects,
    shading,
    vertex_materials,
    view_seed,
)
from vlnav.sim.navgrid import NavGrid


class UnknownSceneError(VlnavError):
    pass


def scene_name(scene: str) -> str:
    """'house_0003/house_0003.glb', 'house_0003.json' or 'house_0003' -> 'house_0003'."""
    return Path(str(scene)).name.split(".")[0]


def find_scene(scenes_dir: Path, scene: str) -> Path:
    """Path of the SceneSpec JSON of ``scene`` in ``scenes_dir``, or a one-line error."""
    name = scene_name(scene)
    path = Path(scenes_dir) / name / f"{name}.json"
    if not path.is_file():
        available = sorted(p.name for p in Path(scenes_dir).glob("*") if p.is_dir())
        hint = f"{len(available)} scenes there" if available else "the folder has no scenes"
        raise UnknownSceneError(f"unknown scene id '{scene}': no {path} ({hint})")
    return path


@lru_cache(maxsize=8)
def _load_scene(path: str, cell: float, radius: float) -> tuple[SceneSpec, NavGrid]:
    spec = SceneSpec.load(path)
    return spec, NavGrid.from_spec(spec, cell=cell, agent_radius=radius)


class BuiltinSimulator:
    """The embedded simulator behind the ``Simulator`` protocol.

    Example:
        >>> sim = BuiltinSimulator(EnvConfig())
        >>> obs = sim.reset("house_0000", [1.0, 0.0, 2.0], [0, 0, 0, 1])
        >>> obs = sim.step(MOVE_FORWARD)
    """

    def __init__(
        self,
        config: EnvConfig | None = None,
        scenes_dir: str | Path | None = None,
        sensors: Any = None,
    ):
        self.config = config or EnvConfig()
        # which sensors observe() renders; () renders nothing (blind agents run without GL)
        self.sensors = tuple(self.config.sensor.sensors if sensors is None else sensors)
        self.scenes_dir = Path(scenes_dir) if scenes_dir else self.config.scenes_dir
        self.spec: SceneSpec | None = None
        self.grid: NavGrid | None = None
        self._renderer = None
        self._geometry_scene: str | None = None
        self._position = [0.0, 0.0, 0.0]
        self._heading = 0.0
        self._collided = False
        self._objects: dict[int, dict[str, Any]] = {}
        self.domain = self.config.domain
        self._domain_id = domain_identity(self.domain)
        self._randomised = is_randomised(self.domain)
        self._params = DomainParams()  # the current draw of the domain (A's: nothing changes)
        self._draw_key = 0
        self._shaded: DomainParams | None = None  # the draw the renderer is set up for

    # ------------------------------------------------------------ scene
    def load_scene(self, scene: str) -> SceneSpec:
        path = find_scene(self.scenes_dir, scene)
        spec, grid = _load_scene(str(path), self.config.grid_cell, self.config.agent.radius)
        if self.spec is None or self.spec.scene_id != spec.scene_id:
            self.spec, self.grid = spec, grid
            self._objects = spec.instances()
            self._draw_domain(spec.scene_id)
        return spec

    def _draw_domain(self, scene: str, position: Any = None, heading: float = 0.0) -> None:
        """Draw the domain's ranges for this scene, or for the episode starting here."""
        if self.domain.is_default:
            return
        self._params = sample_params(self.domain, scene, position, heading)
        self._draw_key = episode_key(scene, position, heading)

    def _ensure_geometry(self) -> None:
        from vlnav.sim.render import Renderer

        if self._renderer is None:
            s = self.config.sensor
            self._renderer = Renderer(width=s.width, height=s.height, hfov=s.hfov)
        assert self.spec is not None
        if self._geometry_scene != self.spec.scene_id:
            from vlnav.scenes.mesh import build_meshes, load_glb

            glb = find_scene(self.scenes_dir, self.spec.scene_id).with_suffix(".glb")
            meshes = load_glb(glb) if glb.is_file() else build_meshes(self.spec)
            geometry = Renderer.geometry_from_meshes(meshes)
            materials = None
            if self.domain.textures:
                materials = vertex_materials(self.spec, geometry[2], geometry[1])
            self._renderer.set_geometry(*geometry, materials=materials)
            self._geometry_scene = self.spec.scene_id
        if self._shaded is not self._params and not self.domain.is_default:
            self._renderer.set_shading(shading(self._params, self.domain.textures))
            self._renderer.set_hfov(self.hfov)
            self._shaded = self._params

    # ------------------------------------------------------------ protocol
    def reset(self, scene: str, position: Any, rotation: Any) -> dict[str, np.ndarray]:
        self.load_scene(scene)
        assert self.grid is not None
        p = [float(v) for v in position]
        if not self.grid.is_navigable(p):
            snapped = self.grid.snap(p, max_dist=0.5)
            if snapped is None:
                raise VlnavError(f"start position {p} is not navigable in scene {scene}")
            p = snapped
        self._position = [p[0], 0.0, p[2]]
        self._heading = quaternion_to_yaw(rotation) if len(rotation) == 4 else float(rotation)
        self._collided = False
        self._draw_domain(self.spec.scene_id, position, self._heading)
        return self.observe()

    def step(self, action: int) -> dict[str, np.ndarray]:
        assert self.grid is not None, "call reset() first"
        a = self.config.agent
        self._collided = False
        if action == MOVE_FORWARD:
            self._position, self._collided = self.grid.move(
                self._position, self._heading, a.forward_step
            )
        elif action == TURN_LEFT:
            self._heading = _wrap(self._heading + math.radians(a.turn_angle))
        elif action == TURN_RIGHT:
            self._heading = _wrap(self._heading - math.radians(a.turn_angle))
        elif action != STOP:
            raise VlnavError(f"unknown action {action!r} (expected 0..3)")
        return self.observe()

    def observe(self, sensors: Any = None) -> dict[str, np.ndarray]:
        sensors = self.sensors if sensors is None else tuple(sensors)
        if not sensors:
            return {}
        self._ensure_geometry()
        eye = self.eye()
        out = self._renderer.render(eye, self._heading, sensors=sensors)
        if "rgb" in out and self._params.has_sensor_effects:
            seed = view_seed(self._params, eye, self._heading)
            out["rgb"] = sensor_effects(out["rgb"], self._params, seed)
        return out

    def panorama(self, n_views: int = 12, sensors: Any = None) -> dict[str, np.ndarray]:
        """Views at headings ``heading + k * 360/n`` (k = 0..n-1, turning left), stacked."""
        self._ensure_geometry()
        yaws = [_wrap(self._heading + 2 * math.pi * k / n_views) for k in range(n_views)]
        sensors = tuple(sensors or self.config.sensor.sensors)
        eye = self.eye()
        out = self._renderer.render_views(eye, yaws, sensors=sensors)
        if "rgb" in out and self._params.has_sensor_effects:
            out["rgb"] = np.stack(
                [
                    sensor_effects(view, self._params, view_seed(self._params, eye, yaw))
                    for view, yaw in zip(out["rgb"], yaws)
                ]
            )
        out["headings"] = np.array(yaws, dtype=np.float32)
        return out

    def eye(self) -> list[float]:
        x, y, z = self._position
        return [x, y + self.config.sensor.camera_height + self._params.camera_height_shift, z]

    @property
    def hfov(self) -> float:
        """The camera's horizontal field of view now (degrees; domains may shift it)."""
        return self.config.sensor.hfov + self._params.hfov_shift

    @property
    def render_tag(self) -> str:
        """What RGB looks like beyond the pose: "" in domain A, else the domain's identity
        and, when its ranges are drawn per episode, the draw. Caches of observations computed
        from RGB add it to their keys."""
        if not self._domain_id or not self._randomised:
            return self._domain_id
        return f"{self._domain_id}-{self._draw_key:08x}"

    def agent_state(self) -> AgentState:
        return AgentState(
            position=list(self._position),
            rotation=yaw_to_quaternion(self._heading),
            heading=self._heading,
            collided=self._collided,
        )

    def set_agent_state(self, position: Any, heading: float) -> None:
        self._position = [float(position[0]), 0.0, float(position[2])]
        self._heading = _wrap(float(heading))

    def snapshot(self) -> tuple:
        """Everything an episode in progress needs back (scene, pose, collision flag and the
        episode's domain draw): the batched evaluator steps many episodes in one simulator."""
        scene = self.spec.scene_id if self.spec is not None else None
        pose = (list(self._position), self._heading, self._collided)
        return (scene, pose, self._params, self._draw_key)

    def restore(self, snap: tuple) -> None:
        scene, (position, heading, collided), params, key = snap
        if scene is not None and (self.spec is None or self.spec.scene_id != scene):
            self.load_scene(scene)
        self._position, self._heading, self._collided = list(position), heading, collided
        self._params, self._draw_key = params, key

    def geodesic_distance(self, a: Any, b: Any) -> float:
        assert self.grid is not None, "load a scene first"
        return self.grid.geodesic_distance(a, b)

    def shortest_path(self, a: Any, b: Any) -> list[list[float]]:
        assert self.grid is not None, "load a scene first"
        return self.grid.shortest_path(a, b)

    def is_navigable(self, p: Any) -> bool:
        assert self.grid is not None, "load a scene first"
        return self.grid.is_navigable(p)

    def objects(self) -> dict[int, dict[str, Any]]:
        return self._objects

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
            self._geometry_scene = None
            self._shaded = None


def _wrap(a: float) -> float:
    """Angle to (-pi, pi]."""
    a = math.fmod(a + math.pi, 2 * math.pi)
    if a <= 0:
        a += 2 * math.pi
    return a - math.pi
