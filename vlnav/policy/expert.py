"""The expert for imitation and DAgger: the candidate that most reduces the geodesic distance
to the goal, or Stop when the agent is close enough."""

from __future__ import annotations

from typing import Any

from vlnav.perception.candidates import TextObservation
from vlnav.policy.prompt import LABELS, STOP_LABEL


def expert_answers(
    sim: Any,
    obs: TextObservation,
    goal: list[float],
    success_radius: float = 3.0,
    stop_distance: float = 1.0,
    tolerance: float = 0.5,
    stop_margin: float = 1.0,
) -> tuple[str, list[str]]:
    """The expert's label, and every label as good as it: the candidates whose waypoint is
    within ``tolerance`` metres (geodesic) of the best one's (two neighbouring views often
    lead to nearly the same place), plus Stop within ``success_radius - stop_margin`` of the
    goal (stopping there succeeds, with a margin); or Stop alone."""
    d0 = sim.geodesic_distance(obs.position, goal)
    if d0 <= stop_distance or not obs.candidates:
        return STOP_LABEL, [STOP_LABEL]
    dists = [sim.geodesic_distance(c.waypoint, goal) for c in obs.candidates]
    k = min(range(len(dists)), key=lambda i: (dists[i], obs.candidates[i].index))
    # inside the success radius, stop unless a move still gets clearly closer
    if d0 <= success_radius - 0.5 and dists[k] > d0 - 0.5:
        return STOP_LABEL, [STOP_LABEL]
    good = [
        LABELS[c.index]
        for c, d in zip(obs.candidates, dists)
        if d <= dists[k] + tolerance and d < d0 - 0.5
    ]
    best = LABELS[obs.candidates[k].index]
    good = good if best in good else [best, *good]
    if d0 <= success_radius - stop_margin:
        good.append(STOP_LABEL)
    return best, good
