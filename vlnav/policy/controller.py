"""The controller: a chosen candidate becomes low-level VLN-CE actions.

A ``straight`` candidate is a fixed list (turn to its view, walk its length:
``candidate_actions``); a ``path`` candidate is followed one action at a time along the
shortest path to its waypoint (``follow_action``), within ``path_budget`` actions."""

from __future__ import annotations

import math
from typing import Any

from vlnav.agents import oracle_action
from vlnav.sim.base import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT


def candidate_actions(
    view_index: int, distance: float, turn_angle: float = 15.0, forward_step: float = 0.25
) -> list[int]:
    """Turn to view ``view_index`` (30 degrees per index, to the left), then walk ``distance``.

    Turns take the short way round; the walk is rounded to whole forward steps. The caller
    stops early when a forward step collides.
    """
    offset = (30.0 * view_index) % 360.0
    if offset <= 180.0:
        turns = [TURN_LEFT] * int(round(offset / turn_angle))
    else:
        turns = [TURN_RIGHT] * int(round((360.0 - offset) / turn_angle))
    steps = max(1, int(math.floor(distance / forward_step + 0.5)))
    return turns + [MOVE_FORWARD] * steps


def path_budget(distance: float, forward_step: float = 0.25, turn_angle: float = 15.0) -> int:
    """The most low-level actions a path move may take: twice its forward steps, plus two
    full turns (a move that has not arrived by then ends, and the next decision follows)."""
    return int(math.ceil(2 * distance / forward_step)) + int(round(720.0 / turn_angle))


def follow_action(
    sim: Any, state: Any, target: list[float], turn_angle: float = 15.0, arrive: float = 0.2
) -> int | None:
    """The next low-level action along the shortest path to ``target`` (a ``path`` waypoint):
    turn towards the path's next corner, or step forward when facing it within half a turn;
    None once within ``arrive`` metres of it (or when it cannot be reached)."""
    a = oracle_action(sim, state, target, arrive, math.radians(turn_angle) / 2)
    return None if a == STOP else a
