"""Path summaries: what a speaker is told about a trajectory.

A :class:`PathSummary` lists, in the order the agent meets them, the start (and the turn
needed to face the path), the doorways crossed, the turns (left / right / around, from the
path's heading changes) and the goal, each with the salient landmarks near it: objects of the
room the agent is in, within a few metres and in line of sight. Landmarks are named
"colour category" from the SceneSpec. Every speaker receives the same summary; the LLM
speakers get it rendered as a numbered list (:meth:`PathSummary.to_prompt`).

Captions along the path (the perception stage) are an optional input, kept as a list of
strings per reference-path waypoint and shown to LLM speakers when present.

Example:
    >>> s = summarize_path(spec, episode.reference_path, start_rotation=episode.start_rotation)
    >>> s.rooms, [e.kind for e in s.events]
    (['bedroom', 'hallway', 'kitchen'], ['start', 'door', 'turn', 'door', 'goal'])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlnav.episodes import quaternion_to_yaw
from vlnav.scenes.spec import SceneObject, SceneSpec


@dataclass
class SummaryConfig:
    """How a path is summarised (``instruct.summary.*``)."""

    landmark_radius: float = 3.0  # metres from the event's point to an object's box
    goal_radius: float = 3.0  # landmarks at the goal (the nearest one is kept in any case)
    landmarks_per_event: int = 3
    turn_degrees: float = 40.0  # heading changes at least this large are turns
    around_degrees: float = 140.0  # ... and at least this large, turns around
    merge_distance: float = 0.75  # bends closer than this (m) count as one turn
    min_object_volume: float = 0.01  # m^3: smaller objects (a laptop) are not landmarks

    def __post_init__(self) -> None:
        from vlnav.config import check_range

        check_range("landmark_radius", self.landmark_radius, 0.1, 20.0)
        check_range("goal_radius", self.goal_radius, 0.1, 20.0)
        check_range("landmarks_per_event", self.landmarks_per_event, 1, 10)
        check_range("turn_degrees", self.turn_degrees, 5.0, 179.0)
        check_range("around_degrees", self.around_degrees, self.turn_degrees, 180.0)
        check_range("merge_distance", self.merge_distance, 0.0, 5.0)
        check_range("min_object_volume", self.min_object_volume, 0.0, 10.0)


@dataclass
class Landmark:
    """An object near a point of the path, as the agent would see it there."""

    name: str  # "red sofa"
    category: str
    colour: str
    instance_id: int
    room: str  # room type
    distance: float  # metres from the point to the object's box
    side: str  # "ahead" | "left" | "right" | "behind", relative to the heading there


@dataclass
class PathEvent:
    """One thing that happens along the path.

    ``kind`` is ``start`` (``direction``: the turn needed to face the path, or None),
    ``door`` (from ``from_room`` into ``room``), ``turn`` (``direction`` left / right /
    around) or ``goal``.
    """

    kind: str
    room: str
    position: list[float]
    distance: float  # metres along the path
    direction: str | None = None
    from_room: str | None = None
    landmarks: list[Landmark] = field(default_factory=list)


@dataclass
class PathSummary:
    """Everything a speaker may say about one episode's path."""

    scene_id: str
    episode_id: int | str
    rooms: list[str]  # room types passed through, in order
    events: list[PathEvent]
    length: float
    room_categories: list[str]  # object categories in the rooms of the path (sorted)
    room_objects: list[str]  # "colour category" names of those objects (sorted, unique)
    captions: list[str] | None = None

    @property
    def landmarks(self) -> list[Landmark]:
        """Landmarks of all events, each object once, in path order."""
        seen: set[int] = set()
        out = []
        for e in self.events:
            for lm in e.landmarks:
                if lm.instance_id not in seen:
                    seen.add(lm.instance_id)
                    out.append(lm)
        return out

    @property
    def goal(self) -> PathEvent:
        return self.events[-1]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PathSummary:
        events = [
            PathEvent(**{**e, "landmarks": [Landmark(**lm) for lm in e.get("landmarks", [])]})
            for e in d["events"]
        ]
        return cls(**{**d, "events": events})

    def to_prompt(self) -> str:
        """The summary as the numbered list LLM speakers receive."""
        lines = [
            f"Rooms along the path, in order: {', '.join(self.rooms)}.",
            f"Path length: {self.length:.1f} m.",
        ]
        for i, e in enumerate(self.events, 1):
            lines.append(f"{i}. {_event_text(e)}")
        names = sorted({lm.name for lm in self.landmarks})
        lines.append(f"Landmarks you may mention: {', '.join(names) if names else 'none'}.")
        if self.captions:
            lines.append("Views along the path:")
            lines.extend(f"- {c}" for c in self.captions)
        return "\n".join(lines)


def _landmark_text(lms: Sequence[Landmark]) -> str:
    parts = []
    for lm in lms:
        where = "ahead" if lm.side == "ahead" else f"on the {lm.side}"
        if lm.side == "behind":
            where = "behind"
        parts.append(f"{lm.name} ({where}, {lm.distance:.1f} m)")
    return "; nearby: " + ", ".join(parts) if parts else ""


def _event_text(e: PathEvent) -> str:
    lms = _landmark_text(e.landmarks)
    if e.kind == "start":
        turn = {None: "facing along the path", "around": "turn around to face the path"}.get(
            e.direction, f"turn {e.direction} to face the path"
        )
        return f"Start in the {e.room}, {turn}{lms}."
    if e.kind == "door":
        return f"Go through a doorway from the {e.from_room} into the {e.room}{lms}."
    if e.kind == "turn":
        verb = "Turn around" if e.direction == "around" else f"Turn {e.direction}"
        return f"{verb} in the {e.room}{lms}."
    return f"Stop in the {e.room} (the goal){lms}."


# --------------------------------------------------------------------------- geometry


def heading_of(a: Sequence[float], b: Sequence[float]) -> float:
    """Habitat heading (yaw, radians) of the direction a -> b: 0 along -z, positive left."""
    return math.atan2(-(b[0] - a[0]), -(b[2] - a[2]))


def wrap(angle: float) -> float:
    """Angle wrapped to (-pi, pi]."""
    a = math.fmod(angle + math.pi, 2 * math.pi)
    if a <= 0:
        a += 2 * math.pi
    return a - math.pi


def relative_side(heading: float, bearing: float) -> str:
    rel = math.degrees(wrap(bearing - heading))
    if abs(rel) <= 35:
        return "ahead"
    if abs(rel) >= 145:
        return "behind"
    return "left" if rel > 0 else "right"


def box_distance(obj: SceneObject, x: float, z: float) -> tuple[float, tuple[float, float]]:
    """Floor distance from (x, z) to the object's box, and the box's nearest point."""
    nx = min(max(x, obj.bbox_min[0]), obj.bbox_max[0])
    nz = min(max(z, obj.bbox_min[2]), obj.bbox_max[2])
    return math.hypot(nx - x, nz - z), (nx, nz)


class SightMap:
    """Walls of a house as a 5 cm grid, for line-of-sight tests between floor points.

    Furniture does not block sight here (the agent's eyes are above most of it); walls and
    closed wall segments do, doorway gaps do not.
    """

    def __init__(self, spec: SceneSpec, cell: float = 0.05) -> None:
        from vlnav.sim.navgrid import obstacle_mask

        bare = dataclasses.replace(spec, objects=[])
        self.open, (self.x0, self.z0) = obstacle_mask(bare, cell)
        self.cell = cell

    def visible(self, a: Sequence[float], b: Sequence[float]) -> bool:
        """Whether the floor segment between a and b ([x, z]) crosses no wall."""
        (ax, az), (bx, bz) = a, b
        n = int(math.ceil(math.hypot(bx - ax, bz - az) / (self.cell / 3))) + 1
        t = np.linspace(0.0, 1.0, n + 1)
        jj = np.floor((ax + t * (bx - ax) - self.x0) / self.cell).astype(int)
        ii = np.floor((az + t * (bz - az) - self.z0) / self.cell).astype(int)
        h, w = self.open.shape
        if ii.min() < 0 or jj.min() < 0 or ii.max() >= h or jj.max() >= w:
            return False
        return bool(self.open[ii, jj].all())

    def sees_object(self, x: float, z: float, obj: SceneObject) -> bool:
        """Line of sight from (x, z) to the object's nearest box point (pulled 5 cm back)."""
        d, (nx, nz) = box_distance(obj, x, z)
        if d < 1e-6:
            return True
        back = min(0.05, d) / d
        return self.visible((x, z), (nx + (x - nx) * back, nz + (z - nz) * back))


# --------------------------------------------------------------------------- summary


def _resample(points: Sequence[Sequence[float]], step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step`` metres along the polyline and their distance from the start."""
    p = np.asarray(points, dtype=float)
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.append(np.arange(0.0, cum[-1], step), cum[-1])
    out = np.stack([np.interp(s, cum, p[:, k]) for k in range(3)], axis=1)
    return out, s


def _clean(points: Sequence[Sequence[float]]) -> list[list[float]]:
    out = [list(map(float, points[0]))]
    for p in points[1:]:
        if math.dist((p[0], p[2]), (out[-1][0], out[-1][2])) > 1e-3:
            out.append(list(map(float, p)))
    return out


def find_turns(
    points: Sequence[Sequence[float]], cfg: SummaryConfig
) -> list[tuple[int, float, str]]:
    """Turns of a polyline: (corner index, signed degrees (+ left), left/right/around).

    Corners closer together than ``merge_distance`` form one turn (a path bending around a
    door frame in two short kinks turns once).
    """
    pts = _clean(points)
    if len(pts) < 3:
        return []
    heads = [heading_of(a, b) for a, b in zip(pts[:-1], pts[1:])]
    lens = [math.dist((a[0], a[2]), (b[0], b[2])) for a, b in zip(pts[:-1], pts[1:])]
    groups: list[list[tuple[int, float]]] = []
    for k in range(1, len(pts) - 1):
        delta = math.degrees(wrap(heads[k] - heads[k - 1]))
        if abs(delta) < 1.0:
            continue
        if groups and sum(lens[groups[-1][-1][0] : k]) < cfg.merge_distance:
            groups[-1].append((k, delta))
        else:
            groups.append([(k, delta)])
    turns = []
    for g in groups:
        total = sum(d for _, d in g)
        if abs(total) < cfg.turn_degrees:
            continue
        k = max(g, key=lambda kd: abs(kd[1]))[0]
        if abs(total) >= cfg.around_degrees:
            turns.append((k, total, "around"))
        else:
            turns.append((k, total, "left" if total > 0 else "right"))
    return turns


class Summarizer:
    """Summarises paths in one house (keeps the house's sight map between calls)."""

    def __init__(self, spec: SceneSpec, config: SummaryConfig | None = None) -> None:
        self.spec = spec
        self.cfg = config or SummaryConfig()
        self.sight = SightMap(spec)
        self._room_type = {r.id: r.type for r in spec.rooms}

    def _room_along(self, samples: np.ndarray) -> list[int | None]:
        rooms = []
        for p in samples:
            r = self.spec.room_at(p[0], p[2])
            rooms.append(r.id if r is not None else None)
        return rooms

    def landmarks(
        self,
        point: Sequence[float],
        heading: float,
        room_ids: Sequence[int],
        radius: float,
        keep_nearest: bool = False,
    ) -> list[Landmark]:
        """Salient objects of ``room_ids`` within ``radius`` of ``point``, in line of sight."""
        x, z = point[0], point[2]
        found = []
        for o in self.spec.objects:
            if o.room not in room_ids:
                continue
            size = [b - a for a, b in zip(o.bbox_min, o.bbox_max)]
            if size[0] * size[1] * size[2] < self.cfg.min_object_volume:
                continue
            d, _ = box_distance(o, x, z)
            if not self.sight.sees_object(x, z, o):
                continue
            found.append((d, o))
        found.sort(key=lambda do: (do[0], do[1].instance_id))
        near = [(d, o) for d, o in found if d <= radius]
        if not near and keep_nearest and found:
            near = found[:1]
        out: list[Landmark] = []
        names: set[str] = set()
        for d, o in near:
            name = f"{o.colour} {o.category}"
            if name in names:  # two dark brown dining chairs: name one
                continue
            if len(out) == self.cfg.landmarks_per_event:
                break
            names.add(name)
            bearing = heading_of(point, o.position)
            out.append(
                Landmark(
                    name=name,
                    category=o.category,
                    colour=o.colour,
                    instance_id=o.instance_id,
                    room=self._room_type.get(o.room, "room"),
                    distance=round(d, 2),
                    side=relative_side(heading, bearing),
                )
            )
        return out

    def summarize(
        self,
        path: Sequence[Sequence[float]],
        start_rotation: Sequence[float] | None = None,
        episode_id: int | str = 0,
        captions: Sequence[str] | None = None,
    ) -> PathSummary:
        """Summarise ``path`` (the reference path, [[x, y, z], ...], start to goal)."""
        cfg, spec = self.cfg, self.spec
        pts = _clean(path)
        if len(pts) < 2:  # a degenerate path: start at the goal
            pts = [pts[0], [pts[0][0], pts[0][1], pts[0][2] - 1e-3]]
        samples, along = _resample(pts, 0.1)
        room_seq = self._room_along(samples)
        # fill wall-gap samples (None) with the previous room, the first one with the next
        known = [r for r in room_seq if r is not None]
        if not known:
            nearest = min(
                spec.rooms, key=lambda r: math.dist(r.center, (samples[0][0], samples[0][2]))
            )
            known = [nearest.id]
        last = known[0]
        for i, r in enumerate(room_seq):
            room_seq[i] = last = r if r is not None else last

        def room_of(s: float) -> int:
            return room_seq[int(np.clip(np.searchsorted(along, s), 0, len(along) - 1))]

        cum = np.concatenate(
            [[0.0], np.cumsum([math.dist(a, b) for a, b in zip(pts[:-1], pts[1:])])]
        )
        length = float(cum[-1])
        events: list[PathEvent] = []

        # start: the turn that makes the agent face the path's first metre
        ahead = samples[min(len(samples) - 1, 10)]
        first_heading = heading_of(pts[0], ahead)
        direction = None
        if start_rotation is not None:
            delta = math.degrees(wrap(first_heading - quaternion_to_yaw(list(start_rotation))))
            if abs(delta) >= cfg.around_degrees:
                direction = "around"
            elif abs(delta) >= cfg.turn_degrees:
                direction = "left" if delta > 0 else "right"
        r0 = room_seq[0]
        events.append(
            PathEvent(
                "start",
                self._room_type[r0],
                _r(pts[0]),
                0.0,
                direction=direction,
                landmarks=self.landmarks(pts[0], first_heading, [r0], cfg.landmark_radius),
            )
        )

        # doorways: where the room changes along the path
        for i in range(1, len(room_seq)):
            a, b = room_seq[i - 1], room_seq[i]
            if a == b:
                continue
            p = samples[i]
            doors = [d for d in spec.doors if set(d.rooms) == {a, b}]
            if doors:
                door = min(doors, key=lambda d: math.dist(d.center, (p[0], p[2])))
                p = np.array([door.center[0], 0.0, door.center[1]])
            heading = heading_of(samples[i - 1], samples[min(i + 5, len(samples) - 1)])
            events.append(
                PathEvent(
                    "door",
                    self._room_type[b],
                    _r(p),
                    round(float(along[i]), 2),
                    from_room=self._room_type[a],
                    landmarks=self.landmarks(p, heading, [b], cfg.landmark_radius),
                )
            )

        # turns: heading changes of the path, landmarks seen on the way in
        for k, _, direction in find_turns(pts, cfg):
            p = pts[k]
            room = room_of(float(cum[k]))
            events.append(
                PathEvent(
                    "turn",
                    self._room_type[room],
                    _r(p),
                    round(float(cum[k]), 2),
                    direction=direction,
                    landmarks=self.landmarks(
                        p, heading_of(pts[k - 1], p), [room], cfg.landmark_radius
                    ),
                )
            )

        # a turn at a doorway comes before or after it by the room it is in
        doors = [e for e in events if e.kind == "door"]
        for t in events:
            if t.kind != "turn":
                continue
            for d in doors:
                if abs(t.distance - d.distance) < cfg.merge_distance:
                    if t.room == d.room:
                        t.distance = max(t.distance, round(d.distance + 0.01, 2))
                    elif t.room == d.from_room:
                        t.distance = min(t.distance, round(d.distance - 0.01, 2))

        # goal
        goal, rg = pts[-1], room_seq[-1]
        events.append(
            PathEvent(
                "goal",
                self._room_type[rg],
                _r(goal),
                round(length, 2),
                landmarks=self.landmarks(
                    goal, heading_of(pts[-2], goal), [rg], cfg.goal_radius, keep_nearest=True
                ),
            )
        )
        order = {"start": 0, "door": 1, "turn": 2, "goal": 3}
        events.sort(key=lambda e: (e.kind == "goal", e.kind != "start", e.distance, order[e.kind]))

        rooms: list[str] = []
        path_room_ids: list[int] = []
        for r in room_seq:
            if not path_room_ids or path_room_ids[-1] != r:
                path_room_ids.append(r)
                rooms.append(self._room_type[r])
        objs = [o for o in spec.objects if o.room in set(path_room_ids)]
        return PathSummary(
            scene_id=spec.scene_id,
            episode_id=episode_id,
            rooms=rooms,
            events=events,
            length=round(length, 2),
            room_categories=sorted({o.category for o in objs}),
            room_objects=sorted({f"{o.colour} {o.category}" for o in objs}),
            captions=list(captions) if captions else None,
        )


def summarize_path(
    spec: SceneSpec,
    path: Sequence[Sequence[float]],
    start_rotation: Sequence[float] | None = None,
    config: SummaryConfig | None = None,
    episode_id: int | str = 0,
    captions: Sequence[str] | None = None,
) -> PathSummary:
    """Summarise one path in ``spec`` (see :class:`Summarizer` to summarise many)."""
    return Summarizer(spec, config).summarize(path, start_rotation, episode_id, captions)


def _r(p: Sequence[float]) -> list[float]:
    return [round(float(v), 3) + 0.0 for v in p]
