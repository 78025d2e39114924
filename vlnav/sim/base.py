"""The simulator backend protocol (habitat-lab's Simulator surface) and the backend registry.

Backends are registered by name with lazy ``"module:Class"`` strings, so ``import vlnav``
never imports an optional dependency; a backend whose dependency is missing fails when it is
constructed, with an install hint.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vlnav import VlnavError

# VLN-CE's action space (habitat's HabitatSimV1ActionSpaceConfiguration order)
STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT = 0, 1, 2, 3
ACTION_NAMES = ("STOP", "MOVE_FORWARD", "TURN_LEFT", "TURN_RIGHT")


@dataclass
class AgentState:
    position: list[float]  # [x, y, z] of the agent's base (on the floor)
    rotation: list[float]  # quaternion [x, y, z, w] about +y
    heading: float  # yaw in radians, 0 looks along -z, positive turns left
    collided: bool = False


@runtime_checkable
class Simulator(Protocol):
    def reset(self, scene: str, position: Any, rotation: Any) -> dict[str, np.ndarray]: ...
    def step(self, action: int) -> dict[str, np.ndarray]: ...
    def observe(self) -> dict[str, np.ndarray]: ...
    def agent_state(self) -> AgentState: ...
    def geodesic_distance(self, a: Any, b: Any) -> float: ...
    def shortest_path(self, a: Any, b: Any) -> list[list[float]]: ...
    def is_navigable(self, p: Any) -> bool: ...
    def objects(self) -> dict[int, dict[str, Any]]: ...
    def close(self) -> None: ...


BACKENDS: dict[str, str] = {
    "builtin": "vlnav.sim.builtin:BuiltinSimulator",
    "habitat": "vlnav.sim.habitat:HabitatSimulator",
}


def make_simulator(name: str, *args: Any, **kwargs: Any) -> Simulator:
    """Construct the backend registered as ``name``."""
    if name not in BACKENDS:
        raise VlnavError(f"unknown simulator backend '{name}' (known: {', '.join(BACKENDS)})")
    module, cls = BACKENDS[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise VlnavError(f"backend '{name}' needs a missing dependency ({e.name}): {e}") from None
    return getattr(mod, cls)(*args, **kwargs)
