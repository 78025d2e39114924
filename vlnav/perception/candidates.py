"""Candidate views as text: the LangNav-style observation of one decision.

At each decision the agent sees 12 views at 30° steps. A direction is a *candidate* when
there is a reachable waypoint in it (at least ``min_range`` metres away), as VLN-CE
waypoint predictors propose. Two ways to find it (``waypoints``):

* ``straight``: the farthest point up to ``max_range`` metres along that heading that the
  agent can walk to in a straight line; the controller turns and walks straight.
* ``path`` (the default policy's): the farthest navigable point up to ``max_range`` metres
  along that heading whose shortest path from the agent is at most ``DETOUR`` times as long
  plus one step; the controller follows that path. A doorway a little off every one of the
  12 headings is then still passed through, where a straight walk ends on the wall beside
  it. With ``DETOUR`` 1.0 the path stays close to the view the caption describes (a larger
  bound lets moves bend away from it: 1.25 trained a far worse policy).

Each candidate's view is captioned and serialised as

    To your 30 degree left is, A kitchen with a white fridge ahead.
      Details: white fridge (2 m, ahead)

plus the option ``Stop``. The policy chooses among these; a controller walks to the waypoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlnav import VlnavError
from vlnav.perception.base import Caption, Captioner, View

N_VIEWS = 12


def direction_phrase(offset_deg: float) -> str:
    """Offset from the agent's heading (positive = left) -> "30 degree left", "front", ..."""
    k = int(round(offset_deg)) % 360
    if k == 0:
        return "front"
    if k == 180:
        return "back"
    return f"{k} degree left" if k < 180 else f"{360 - k} degree right"


@dataclass
class Candidate:
    index: int  # view index k: offset = 30 * k degrees to the left
    offset_deg: float
    heading: float  # absolute yaw (radians) of the direction
    waypoint: list[float]
    distance: float  # metres walked to the waypoint (a whole number of forward steps)
    caption: Caption

    @property
    def direction(self) -> str:
        return direction_phrase(self.offset_deg)

    def to_text(self, details: bool = True) -> str:
        d = self.direction
        head = f"To your {d} is, {self.caption.text}"
        if details and self.caption.mentions:
            head += "\n  Details: " + "; ".join(self.caption.details())
        return head

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "offset_deg": self.offset_deg,
            "heading": self.heading,
            "waypoint": self.waypoint,
            "distance": self.distance,
            "caption": self.caption.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        return cls(
            d["index"],
            d["offset_deg"],
            d["heading"],
            d["waypoint"],
            d["distance"],
            Caption.from_dict(d["caption"]),
        )


@dataclass
class TextObservation:
    scene_id: str
    position: list[float]
    heading: float
    candidates: list[Candidate] = field(default_factory=list)

    def to_text(self, details: bool = True) -> str:
        lines = [c.to_text(details) for c in self.candidates]
        return "\n".join([*lines, "Stop"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "scene_id": self.scene_id,
            "position": self.position,
            "heading": self.heading,
            "candidates": [c.to_dict() for c in self.candidates],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextObservation:
        return cls(
            d["scene_id"],
            d["position"],
            d["heading"],
            [Candidate.from_dict(c) for c in d["candidates"]],
        )


def find_waypoint(
    sim: Any,
    position: list[float],
    heading: float,
    max_range: float = 3.0,
    min_range: float = 0.75,
    step: float = 0.25,
) -> tuple[list[float], float] | None:
    """Where walking straight along ``heading`` for up to ``max_range`` metres ends.

    The walk is simulated with the agent's own forward steps (``step`` metres, sliding along
    obstacles as the backend does), so the controller that later takes the same steps lands
    exactly on the waypoint, and a doorway slightly off the direction is still passed through.
    Returns (waypoint, walked length), or None when the walk ends within ``min_range``.
    """
    grid = getattr(sim, "grid", None)
    p = [float(v) for v in position]
    walked = 0.0
    for _ in range(int(round(max_range / step))):
        if grid is not None:
            q, _ = grid.move(p, heading, step)
        else:  # backends without a grid: straight steps, no sliding
            q = [p[0] - math.sin(heading) * step, p[1], p[2] - math.cos(heading) * step]
            if not sim.is_navigable(q):
                break
        if math.dist(p, q) < 0.5 * step:  # blocked: sliding would creep along the wall
            break
        p = q
        walked += step
    if math.dist(p, position) < min_range:
        return None
    return p, walked


WAYPOINT_MODES = ("straight", "path")
DETOUR = 1.0  # a path waypoint's shortest path: at most DETOUR * its straight line + one step


def find_path_waypoint(
    sim: Any,
    position: list[float],
    heading: float,
    max_range: float = 3.0,
    min_range: float = 0.75,
    step: float = 0.25,
    detour: float = DETOUR,
) -> tuple[list[float], float] | None:
    """The farthest navigable point along ``heading`` (tried every ``step`` metres from
    ``max_range`` down to ``min_range``) whose geodesic distance from ``position`` is at most
    ``detour * r + step``, r its straight-line distance. Returns (waypoint, geodesic length),
    or None when no such point exists (a wall or a long way round in that direction).

    All the geodesic queries of one decision share their end point (the agent), so the
    builtin backend answers them from one distance field."""
    dx, dz = -math.sin(heading), -math.cos(heading)
    n = int(math.floor((max_range - min_range) / step + 1e-9))
    for k in range(n + 1):
        r = max_range - k * step
        q = [float(position[0] + dx * r), float(position[1]), float(position[2] + dz * r)]
        if not sim.is_navigable(q):
            continue
        g = sim.geodesic_distance(q, position)
        if g <= detour * r + step:
            return q, float(g)
    return None


class TextObserver:
    """Renders the 12-view panorama at the agent's pose and builds its TextObservation.

    Example:
        >>> observer = TextObserver(sim, make_captioner("semantic"))
        >>> print(observer.observe("house_0004").to_text())
    """

    def __init__(
        self,
        sim: Any,
        captioner: Captioner,
        cache: Any = None,
        max_range: float = 3.0,
        min_range: float = 0.75,
        step: float | None = None,
        waypoints: str = "straight",
    ) -> None:
        if waypoints not in WAYPOINT_MODES:
            raise VlnavError(
                f"waypoints {waypoints!r}: expected one of {', '.join(WAYPOINT_MODES)}"
            )
        self.waypoints = waypoints
        self.sim = sim
        cfg = getattr(sim, "config", None)
        self.step = step or (cfg.agent.forward_step if cfg is not None else 0.25)
        self.captioner = captioner
        self.cache = cache
        self.max_range = max_range
        self.min_range = min_range

    def observe(self, scene_id: str) -> TextObservation:
        st = self.sim.agent_state()
        key = None
        if self.cache is not None:
            identity = self.captioner.identity
            if self.waypoints != "straight":  # other candidates: other observations
                identity = f"{identity}|waypoints={self.waypoints}"
            tag = getattr(self.sim, "render_tag", "")  # the rendering domain's draw, if any
            if tag and "rgb" in self.captioner.needs:
                identity = f"{identity}@{tag}"
            key = self.cache.key(scene_id, st.position, st.heading, identity)
            hit = self.cache.get(key)
            if hit is not None:
                return TextObservation.from_dict(hit)
        obs = self._compute(scene_id, st.position, st.heading)
        if self.cache is not None:
            self.cache.put(key, obs.to_dict())
        return obs

    def _compute(self, scene_id: str, position: list[float], heading: float) -> TextObservation:
        headings = [heading + 2 * math.pi * k / N_VIEWS for k in range(N_VIEWS)]
        find = find_path_waypoint if self.waypoints == "path" else find_waypoint
        ways = [
            find(self.sim, position, h, self.max_range, self.min_range, self.step) for h in headings
        ]
        keep = [k for k, w in enumerate(ways) if w is not None]
        out = TextObservation(scene_id, list(position), heading)
        if not keep:
            return out
        needs = tuple(self.captioner.needs)
        pano = self.sim.panorama(sensors=needs) if needs else {}
        objects = self.sim.objects()
        hfov = getattr(self.sim, "hfov", None)  # the camera's own (a domain may shift it)
        if hfov is None:
            sensor = getattr(getattr(self.sim, "config", None), "sensor", None)
            hfov = sensor.hfov if sensor is not None else 90.0
        views = [
            View(
                rgb=pano["rgb"][k] if "rgb" in pano else None,
                depth=pano["depth"][k] if "depth" in pano else None,
                semantic=pano["semantic"][k] if "semantic" in pano else None,
                objects=objects,
                hfov=hfov,
                reach=ways[k][1],
            )
            for k in keep
        ]
        caps = self.captioner.caption(views)
        for k, cap in zip(keep, caps):
            wp, dist = ways[k]
            out.candidates.append(
                Candidate(
                    k,
                    30.0 * k,
                    float(np.remainder(headings[k] + math.pi, 2 * math.pi) - math.pi),
                    [float(v) for v in wp],
                    round(dist, 3),
                    cap,
                )
            )
        return out
