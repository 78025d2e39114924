"""The controller: a chosen candidate becomes low-level VLN-CE actions."""

from __future__ import annotations

import math

from vlnav.sim.base import MOVE_FORWARD, TURN_LEFT, TURN_RIGHT


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
