"""The expert for imitation and DAgger: the candidate that most reduces the geodesic distance
to the goal, or Stop when the agent is close enough."""

from __future__ import annotations

from typing import Any

from vlnav.perception.candidates import TextObservation
from vlnav.policy.prompt import LABELS, STOP_LABEL

REGRET_CAP = 4.0  # metres: a failed Stop, and the most a move's regret counts


def expert_judgement(
    sim: Any,
    obs: TextObservation,
    goal: list[float],
    success_radius: float = 3.0,
    stop_distance: float = 1.0,
    tolerance: float = 0.5,
    stop_margin: float = 1.0,
) -> tuple[str, list[str], dict[str, float], float]:
    """The expert's label, and every label as good as it: the candidates whose waypoint is
    within ``tolerance`` metres (geodesic) of the best one's (two neighbouring views often
    lead to nearly the same place), plus Stop within ``success_radius - stop_margin`` of the
    goal (stopping there succeeds, with a margin); or Stop alone.

    Also each available label's regret (metres): 0 for a good label; for another move, how much farther from the goal its
    waypoint is than the best waypoint (or than the agent, when Stop is best), at most
    ``REGRET_CAP``; for Stop, 0.5 inside the success radius and ``REGRET_CAP`` outside it
    (the episode fails). Imitation with ``optim.regret`` weighs a wrong answer by it, so a
    step the wrong way costs more than a near miss.

    Last, the agent's geodesic distance to the goal (metres): the stop head's target
    (``policy.stop_head``) is whether it is within ``optim.stop_within``."""
    d0 = sim.geodesic_distance(obs.position, goal)
    dists = [sim.geodesic_distance(c.waypoint, goal) for c in obs.candidates]
    labels = [LABELS[c.index] for c in obs.candidates]
    if d0 <= stop_distance or not obs.candidates:
        best, good = STOP_LABEL, [STOP_LABEL]
    else:
        k = min(range(len(dists)), key=lambda i: (dists[i], obs.candidates[i].index))
        best = labels[k]
        # inside the success radius, stop unless a move still gets clearly closer
        if d0 <= success_radius - 0.5 and dists[k] > d0 - 0.5:
            best, good = STOP_LABEL, [STOP_LABEL]
        else:
            good = [
                lab for lab, d in zip(labels, dists) if d <= dists[k] + tolerance and d < d0 - 0.5
            ]
            good = good if best in good else [best, *good]
            if d0 <= success_radius - stop_margin:
                good.append(STOP_LABEL)
    ref = min([d0, *dists]) if best == STOP_LABEL else min(dists)
    regret = {lab: min(max(d - ref, 0.0), REGRET_CAP) for lab, d in zip(labels, dists)}
    regret[STOP_LABEL] = 0.5 if d0 <= success_radius else REGRET_CAP
    for lab in good:
        regret[lab] = 0.0
    return best, good, {k: round(v, 3) for k, v in regret.items()}, round(float(d0), 3)
