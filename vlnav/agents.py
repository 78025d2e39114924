"""Baseline agents: ``random``, ``forward`` and ``oracle``.

An agent sees the episode (instruction, start) at ``reset`` and chooses one low-level VLN-CE
action per step from the observations and its own state. ``oracle`` is privileged: it reads
the simulator's shortest path, as VLN-CE's ShortestPathFollower does.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from vlnav import VlnavError
from vlnav.sim.base import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT, AgentState


class Agent(Protocol):
    name: str
    sensors: tuple[str, ...]  # which observations it reads; () lets the harness skip rendering

    def reset(self, episode: Any, sim: Any, seed: int) -> None: ...
    def act(self, observations: dict[str, np.ndarray], state: AgentState) -> int: ...


class RandomAgent:
    """Samples actions from R2R-CE's training action distribution (as VLN-CE's random agent)."""

    name = "random"
    sensors: tuple[str, ...] = ()
    probs = (0.02, 0.68, 0.15, 0.15)  # STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT

    def reset(self, episode: Any, sim: Any, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, observations: dict[str, np.ndarray], state: AgentState) -> int:
        return int(self.rng.choice(4, p=self.probs))


class ForwardAgent:
    """A blind heuristic (VLN-CE's hand-crafted agent): face a random direction, walk forward
    for the average episode length, turning away from walls it bumps into, then stop."""

    name = "forward"
    sensors: tuple[str, ...] = ()

    def __init__(self, forward_steps: int = 37):
        self.forward_steps = forward_steps

    def reset(self, episode: Any, sim: Any, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.turns_left = int(self.rng.integers(0, 24))
        self.walked = 0
        self.escape = 0

    def act(self, observations: dict[str, np.ndarray], state: AgentState) -> int:
        if self.turns_left > 0:
            self.turns_left -= 1
            return TURN_LEFT
        if self.escape > 0:
            self.escape -= 1
            return TURN_RIGHT
        if self.walked >= self.forward_steps:
            return STOP
        if state.collided:
            self.escape = 5  # about 90 degrees away from the obstacle
            return TURN_RIGHT
        self.walked += 1
        return MOVE_FORWARD


class OracleAgent:
    """Follows the shortest path with low-level actions and stops at the goal."""

    name = "oracle"
    sensors: tuple[str, ...] = ()

    def __init__(self, stop_distance: float = 0.3, turn_angle: float = 15.0):
        self.stop_distance = stop_distance
        self.half_turn = math.radians(turn_angle) / 2

    def reset(self, episode: Any, sim: Any, seed: int) -> None:
        self.sim = sim
        self.goal = list(episode.goal_position)

    def act(self, observations: dict[str, np.ndarray], state: AgentState) -> int:
        return oracle_action(self.sim, state, self.goal, self.stop_distance, self.half_turn)


def oracle_action(
    sim: Any, state: AgentState, goal: list[float], stop_distance: float, half_turn: float
) -> int:
    """The low-level action that follows the shortest path from ``state`` to ``goal``."""
    try:
        path = sim.shortest_path(state.position, goal)
    except ValueError:
        return STOP
    if len(path) < 2:
        return STOP
    remaining = sum(math.dist(path[k], path[k + 1]) for k in range(len(path) - 1))
    if remaining <= stop_distance:
        return STOP
    p = state.position
    target = path[1]
    if math.dist(p, target) < 0.05 and len(path) > 2:
        target = path[2]
    desired = math.atan2(-(target[0] - p[0]), -(target[2] - p[2]))
    diff = math.remainder(desired - state.heading, 2 * math.pi)
    if abs(diff) <= half_turn + 1e-6:
        return MOVE_FORWARD
    return TURN_LEFT if diff > 0 else TURN_RIGHT


AGENTS: dict[str, Any] = {
    "random": RandomAgent,
    "forward": ForwardAgent,
    "oracle": OracleAgent,
    "policy": "vlnav.policy.agent:PolicyAgent",  # needs torch: imported when asked for
}


def make_agent(name: str, **kwargs: Any) -> Agent:
    if name not in AGENTS:
        raise VlnavError(f"unknown agent '{name}' (known: {', '.join(AGENTS)})")
    cls = AGENTS[name]
    if isinstance(cls, str):
        import importlib

        module, attr = cls.split(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except ImportError as e:
            raise VlnavError(
                f"agent '{name}' needs a missing dependency ({e.name}): pip install -e '.[llm]'"
            ) from None
    return cls(**kwargs)
