"""The ``habitat`` backend: the Simulator protocol on habitat-sim 0.3.x.

A thin layer: every decision (settings, conversions, scene files, action names, data checks)
is a pure function of ``vlnav.sim.habitat_config``; this module only calls habitat-sim.
habitat-sim is imported when a ``HabitatSimulator`` is constructed, never at import time; where
it is missing, construction raises a one-line ``VlnavError`` with the install command.

Scenes: procedural houses are written once as a habitat scene dataset next to their SceneSpec
(``<scenes>/<house>/habitat/``, see ``habitat_config.write_habitat_scene``); MP3D scans are
loaded from ``<scenes>/<scene>/<scene>.glb`` with their own navmesh and semantic annotations.

Example:
    >>> sim = HabitatSimulator(load_config(EnvConfig, "envs/habitat-procedural.yaml"))
    >>> obs = sim.reset("house_0000", [1.0, 0.0, 2.0], [0, 0, 0, 1])
    >>> obs = sim.step(MOVE_FORWARD)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from vlnav import VlnavError
from vlnav.config import EnvConfig
from vlnav.sim.base import AgentState
from vlnav.sim.habitat_config import (
    INSTALL_HINT,
    HabitatScene,
    HabitatSettings,
    agent_state_from_habitat,
    check_external_data,
    convert_observations,
    habitat_action,
    habitat_settings,
    objects_from_semantic_scene,
    resolve_scene,
    start_state,
    wrap_angle,
)

SNAP_DISTANCE = 0.5  # m: how far reset() may move a start that is off the navmesh


def require_habitat_sim() -> Any:
    """``import habitat_sim``, or a one-line VlnavError saying how to install it."""
    try:
        import habitat_sim
    except ImportError as e:
        raise VlnavError(
            f"the habitat backend needs habitat-sim, which is not installed ({e}); "
            f"install it with conda (conda only on Linux): {INSTALL_HINT}"
        ) from None
    return habitat_sim


class HabitatSimulator:
    """habitat-sim behind the ``Simulator`` protocol (same arguments as ``BuiltinSimulator``)."""

    def __init__(
        self,
        config: EnvConfig | None = None,
        scenes_dir: str | Path | None = None,
        sensors: Any = None,
    ):
        self.hsim = require_habitat_sim()
        self.config = config or EnvConfig()
        self.scenes_dir = Path(scenes_dir) if scenes_dir else self.config.scenes_dir
        check_external_data(self.config, scenes_dir=self.scenes_dir)
        # what observe() returns; habitat renders the env's sensors (panorama may ask for them)
        self.sensors = tuple(self.config.sensor.sensors if sensors is None else sensors)
        rendered = list(dict.fromkeys([*self.sensors, *self.config.sensor.sensors]))
        self.settings: HabitatSettings = habitat_settings(self.config, rendered)
        self._sim: Any = None
        self._scene: HabitatScene | None = None
        self._objects: dict[int, dict[str, Any]] = {}
        self._collided = False

    # ------------------------------------------------------------ configuration
    def _configuration(self, scene: HabitatScene) -> Any:
        hs, s = self.hsim, self.settings
        sim_cfg = hs.SimulatorConfiguration()
        sim_cfg.scene_dataset_config_file = scene.dataset_config
        sim_cfg.scene_id = scene.scene_id
        sim_cfg.allow_sliding = s.allow_sliding
        sim_cfg.enable_physics = s.enable_physics
        sim_cfg.gpu_device_id = s.gpu_device_id
        sim_cfg.random_seed = s.random_seed
        sim_cfg.frustum_culling = s.frustum_culling
        if s.recompute_navmesh:
            # habitat-sim recomputes the navmesh when the scene's differs from these settings
            nav = hs.nav.NavMeshSettings()
            nav.set_defaults()
            for key, value in s.navmesh.items():
                setattr(nav, key, value)
            sim_cfg.navmesh_settings = nav

        specs = []
        for sensor in s.sensors:
            spec = hs.CameraSensorSpec()
            spec.uuid = sensor.uuid
            spec.sensor_type = getattr(hs.SensorType, sensor.sensor_type)
            spec.sensor_subtype = hs.SensorSubType.PINHOLE
            spec.resolution = list(sensor.resolution)
            spec.position = list(sensor.position)
            spec.hfov = sensor.hfov
            specs.append(spec)
        agent_cfg = hs.agent.AgentConfiguration(
            height=s.agent_height,
            radius=s.agent_radius,
            sensor_specifications=specs,
            action_space={
                key: hs.agent.ActionSpec(name, hs.agent.ActuationSpec(amount=amount))
                for key, (name, amount) in s.actions.items()
            },
        )
        return hs.Configuration(sim_cfg, [agent_cfg])

    def load_scene(self, scene: str) -> HabitatScene:
        target = resolve_scene(self.config, scene, self.scenes_dir)
        if target == self._scene:
            return target
        cfg = self._configuration(target)
        if self._sim is None:
            self._sim = self.hsim.Simulator(cfg)
        else:
            self._sim.reconfigure(cfg)
        self._scene = target
        if not self._sim.pathfinder.is_loaded:
            raise VlnavError(f"scene '{scene}' has no navmesh (set habitat.recompute_navmesh)")
        self._objects = self._scene_objects(scene)
        return target

    def _scene_objects(self, scene: str) -> dict[int, dict[str, Any]]:
        if self.config.scenes.procedural:
            from vlnav.scenes.spec import SceneSpec
            from vlnav.sim.builtin import find_scene

            return SceneSpec.load(find_scene(self.scenes_dir, scene)).instances()
        semantic = self._sim.semantic_scene
        if semantic is None:
            return {}
        entries = []
        for obj in semantic.objects:
            if obj is None or obj.category is None:
                continue
            region = obj.region
            entries.append(
                {
                    "semantic_id": obj.semantic_id,
                    "category": obj.category.name(),
                    "center": list(obj.aabb.center),
                    "region": region.id if region is not None else None,
                    "region_category": region.category.name()
                    if region is not None and region.category is not None
                    else None,
                }
            )
        return objects_from_semantic_scene(entries)

    # ------------------------------------------------------------ protocol
    def _agent(self) -> Any:
        if self._sim is None:
            raise VlnavError("call reset() first")
        return self._sim.get_agent(0)

    def _set_state(self, position: list[float], coeffs: list[float]) -> None:
        state = self.hsim.AgentState()
        state.position = np.asarray(position, dtype=np.float32)
        state.rotation = self.hsim.utils.common.quat_from_coeffs(coeffs)
        self._agent().set_state(state, reset_sensors=True)

    def reset(self, scene: str, position: Any, rotation: Any) -> dict[str, np.ndarray]:
        self.load_scene(scene)
        p, coeffs = start_state(position, rotation)
        snapped = np.asarray(self._sim.pathfinder.snap_point(np.asarray(p, dtype=np.float32)))
        if (
            not np.all(np.isfinite(snapped))
            or math.dist((snapped[0], snapped[2]), (p[0], p[2])) > SNAP_DISTANCE
        ):
            raise VlnavError(f"start position {p} is not navigable in scene {scene}")
        self._set_state([float(v) for v in snapped], coeffs)
        self._collided = False
        return self.observe()

    def step(self, action: int) -> dict[str, np.ndarray]:
        key = habitat_action(action)
        self._collided = False
        if key is not None:
            # the agent's own controls: the navmesh step filter (sliding) without a render;
            # observe() renders only what the caller reads
            self._collided = bool(self._agent().act(key))
        return self.observe()

    def observe(self, sensors: Any = None) -> dict[str, np.ndarray]:
        sensors = self.sensors if sensors is None else tuple(sensors)
        if not sensors:
            return {}
        missing = [s for s in sensors if s not in {x.uuid for x in self.settings.sensors}]
        if missing:
            raise VlnavError(f"sensor(s) {missing} are not in the env's sensor.sensors")
        self._agent()
        return convert_observations(self._sim.get_sensor_observations(), sensors)

    def panorama(self, n_views: int = 12, sensors: Any = None) -> dict[str, np.ndarray]:
        """Views at headings ``heading + k * 360/n`` (k = 0..n-1, turning left), stacked."""
        state = self.agent_state()
        sensors = tuple(sensors or self.config.sensor.sensors)
        views: list[dict[str, np.ndarray]] = []
        yaws = []
        try:
            for k in range(n_views):
                yaw = wrap_angle(state.heading + 2 * math.pi * k / n_views)
                yaws.append(yaw)
                self._set_state(state.position, start_state(state.position, yaw)[1])
                views.append(self.observe(sensors))
        finally:
            self._set_state(state.position, state.rotation)
        out = {s: np.stack([v[s] for v in views]) for s in sensors}
        out["headings"] = np.array(yaws, dtype=np.float32)
        return out

    def agent_state(self) -> AgentState:
        st = self._agent().get_state()
        coeffs = self.hsim.utils.common.quat_to_coeffs(st.rotation)
        return agent_state_from_habitat(st.position, coeffs, self._collided)

    def _path(self, a: Any, b: Any) -> Any:
        path = self.hsim.ShortestPath()
        path.requested_start = np.asarray(a, dtype=np.float32)
        path.requested_end = np.asarray(b, dtype=np.float32)
        if self._sim is None:
            raise VlnavError("load a scene first")
        found = self._sim.pathfinder.find_path(path)
        return path if found else None

    def geodesic_distance(self, a: Any, b: Any) -> float:
        path = self._path(a, b)
        d = float(path.geodesic_distance) if path is not None else math.inf
        return d if math.isfinite(d) else math.inf

    def shortest_path(self, a: Any, b: Any) -> list[list[float]]:
        path = self._path(a, b)
        if path is None or len(path.points) == 0:
            raise ValueError(f"no path from {list(a)} to {list(b)}")
        return [[float(v) for v in p] for p in path.points]

    def is_navigable(self, p: Any) -> bool:
        if self._sim is None:
            raise VlnavError("load a scene first")
        return bool(self._sim.pathfinder.is_navigable(np.asarray(p, dtype=np.float32)))

    def objects(self) -> dict[int, dict[str, Any]]:
        return self._objects

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None
            self._scene = None
