"""Text trajectories (LangNav's format) and imagined ones written by a language model.

A text trajectory is an instruction and the decisions of an agent that follows it, with the
world seen only as text: at each step up to 12 views at 30 degree steps around the agent,
the navigable ones listed as candidates with a description, and the action taken, the index
of the chosen candidate or ``"stop"`` (only at the last step). One JSON object per line::

    {"instruction": "Walk out of the bedroom and stop next to the white fridge.",
     "steps": [{"candidates": [{"direction": "front",
                                "description": "a hallway with a white wardrobe"},
                               {"direction": "90 degree left",
                                "description": "a bedroom with a grey bed"}],
                "action": 0},
               ...,
               {"candidates": [...], "action": "stop"}],
     "source": "simulator",            # or "imagined"
     "episode_id": 3, "scene_id": "house_0002",   # simulator trajectories only
     "provenance": {"speaker": "template", "model": "template-v1",
                    "prompt_hash": "…", "seed": 123, "attempt": 0}}

Directions are ``front``, ``30 degree left`` … ``150 degree left``, ``back``,
``150 degree right`` … ``30 degree right`` (positive angles turn left, as in Habitat): the
names of ``vlnav.perception.candidates.direction_phrase``, read back by the policy's
``vlnav.train.load_imagined``.

Language models read and write the same content as text (:meth:`TextTrajectory.to_prompt`,
:func:`parse_trajectory`)::

    Instruction: Walk out of the bedroom and stop next to the white fridge.
    Step 1:
    1. To your front is, a hallway with a white wardrobe
    2. To your 90 degree left is, a bedroom with a grey bed
    Action: 1
    Step 2:
    ...
    Action: stop

Trajectories from the simulator (the seed examples of ``--mode imagine``, and the text
trajectories written beside instruction episodes) describe each view from the SceneSpec:
the objects whose centres lie in that 30 degree sector, in line of sight and within a few
metres (:func:`describe_views`). The perception stage will replace these descriptions with
captions of rendered views.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlnav import VlnavError
from vlnav.episodes import Episode, quaternion_to_yaw
from vlnav.instruct.summary import SightMap, box_distance, heading_of, wrap
from vlnav.scenes.spec import SceneSpec
from vlnav.sim.navgrid import NavGrid

DIRECTIONS: tuple[str, ...] = (
    "front",
    *(f"{30 * k} degree left" for k in range(1, 6)),
    "back",
    *(f"{30 * (12 - k)} degree right" for k in range(7, 12)),
)
"""The 12 view directions; index k looks k * 30 degrees to the left."""

STOP = "stop"


class TrajectoryFormatError(VlnavError):
    """A text trajectory is malformed; ``reason`` is a short key counted in summaries."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Candidate:
    direction: str  # one of DIRECTIONS
    description: str


@dataclass
class Step:
    candidates: list[Candidate]
    action: int | str  # index into candidates, or "stop"


@dataclass
class TextTrajectory:
    """An instruction and the text-only decisions that follow it (see the module doc)."""

    instruction: str
    steps: list[Step]
    source: str = "simulator"  # "simulator" | "imagined"
    episode_id: int | str | None = None
    scene_id: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "instruction": self.instruction,
            "steps": [
                {
                    "candidates": [
                        {"direction": c.direction, "description": c.description}
                        for c in s.candidates
                    ],
                    "action": s.action,
                }
                for s in self.steps
            ],
            "source": self.source,
        }
        if self.episode_id is not None:
            out["episode_id"] = self.episode_id
        if self.scene_id is not None:
            out["scene_id"] = self.scene_id
        if self.provenance:
            out["provenance"] = self.provenance
        return out

    @classmethod
    def from_dict(cls, d: Any) -> TextTrajectory:
        """Validate and build; raises :class:`TrajectoryFormatError` naming the problem."""
        if not isinstance(d, dict) or not isinstance(d.get("instruction"), str):
            raise TrajectoryFormatError("no_instruction", "'instruction' must be a string")
        raw_steps = d.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise TrajectoryFormatError("no_steps", "'steps' must be a non-empty list")
        steps = []
        for i, s in enumerate(raw_steps):
            if not isinstance(s, dict) or not isinstance(s.get("candidates"), list):
                raise TrajectoryFormatError("bad_step", f"step {i} has no 'candidates' list")
            cands = []
            for c in s["candidates"]:
                if not isinstance(c, dict) or c.get("direction") not in DIRECTIONS:
                    raise TrajectoryFormatError("bad_direction", f"step {i}: {c!r}")
                cands.append(Candidate(c["direction"], str(c.get("description", ""))))
            steps.append(Step(cands, s.get("action")))
        traj = cls(
            instruction=d["instruction"],
            steps=steps,
            source=str(d.get("source", "simulator")),
            episode_id=d.get("episode_id"),
            scene_id=d.get("scene_id"),
            provenance=dict(d.get("provenance") or {}),
        )
        check_steps(traj.steps)
        return traj

    def to_prompt(self) -> str:
        """The trajectory as the text a language model reads and writes."""
        lines = [f"Instruction: {self.instruction}"]
        for i, s in enumerate(self.steps, 1):
            lines.append(f"Step {i}:")
            for k, c in enumerate(s.candidates, 1):
                lines.append(f"{k}. To your {c.direction} is, {c.description}")
            lines.append(f"Action: {s.action + 1 if isinstance(s.action, int) else STOP}")
        return "\n".join(lines)


def check_steps(steps: Sequence[Step], max_steps: int = 40) -> None:
    """Raise :class:`TrajectoryFormatError` unless the steps form a valid trajectory."""
    if len(steps) < 2:
        raise TrajectoryFormatError(
            "too_few_steps", f"{len(steps)} step(s); need a move and a stop"
        )
    if len(steps) > max_steps:
        raise TrajectoryFormatError("too_many_steps", f"{len(steps)} steps > {max_steps}")
    for i, s in enumerate(steps):
        dirs = [c.direction for c in s.candidates]
        if len(set(dirs)) != len(dirs):
            raise TrajectoryFormatError("duplicate_direction", f"step {i + 1}")
        last = i == len(steps) - 1
        if s.action == STOP:
            if not last:
                raise TrajectoryFormatError("early_stop", f"stop at step {i + 1} of {len(steps)}")
            continue
        if last:
            raise TrajectoryFormatError("no_stop", "the last step must stop")
        if not s.candidates:
            raise TrajectoryFormatError("no_candidates", f"step {i + 1}")
        if not isinstance(s.action, int) or isinstance(s.action, bool):
            raise TrajectoryFormatError("bad_action", f"step {i + 1}: {s.action!r}")
        if not 0 <= s.action < len(s.candidates):
            raise TrajectoryFormatError("bad_action", f"step {i + 1}: candidate {s.action + 1}")


# ------------------------------------------------------------------------------ parsing

_INSTRUCTION_RE = re.compile(r"^\W*instruction\W*:\s*(?P<text>.*)$", re.IGNORECASE)
_STEP_RE = re.compile(r"^\W*step\s*(?P<n>\d+)\W*$", re.IGNORECASE)
_CAND_RE = re.compile(
    r"^\s*(?:[-*]\s*)?(?:(?P<k>\d+)\s*[.):]\s*)?to\s+your\s+(?P<dir>.+?)\s+is\s*,\s*(?P<desc>.+?)\s*$",
    re.IGNORECASE,
)
_ACTION_RE = re.compile(r"^\W*action\W*:\s*(?P<a>.*?)\W*$", re.IGNORECASE)


def normalise_direction(text: str) -> str | None:
    """``"30 degrees left"``, ``"30° left"`` -> ``"30 degree left"``; None if not a direction."""
    t = re.sub(r"\bdegrees\b", "degree", text.lower().replace("°", " degree "))
    t = re.sub(r"\s+", " ", t).strip().removeprefix("the ")
    t = {"straight ahead": "front", "ahead": "front", "behind": "back"}.get(t, t)
    return t if t in DIRECTIONS else None


def parse_trajectory(text: str) -> TextTrajectory:
    """Parse a language model's text trajectory (the format of :meth:`TextTrajectory.to_prompt`).

    Tolerates markdown emphasis, bullets and blank lines; raises
    :class:`TrajectoryFormatError` with a reason key for anything else.
    """
    instruction = None
    steps: list[Step] = []
    cands: list[Candidate] | None = None
    action: int | str | None = None

    def close_step() -> None:
        nonlocal cands, action
        if cands is None:
            return
        if action is None:
            raise TrajectoryFormatError("missing_action", f"step {len(steps) + 1}")
        steps.append(Step(cands, action))
        cands, action = None, None

    for raw in text.replace("**", "").replace("__", "").splitlines():
        line = raw.strip().strip("#").strip()
        if not line:
            continue
        if instruction is None and (m := _INSTRUCTION_RE.match(line)):
            instruction = m.group("text").strip().strip('"')
            continue
        if m := _STEP_RE.match(line):
            close_step()
            cands, action = [], None
            continue
        if cands is None:
            continue  # text before the first step (a preamble)
        if m := _CAND_RE.match(line):
            if action is not None:
                raise TrajectoryFormatError("missing_step", "a view after the action")
            direction = normalise_direction(m.group("dir"))
            if direction is None:
                raise TrajectoryFormatError("bad_direction", m.group("dir")[:40])
            cands.append(Candidate(direction, m.group("desc").rstrip(".")))
            continue
        if m := _ACTION_RE.match(line):
            a = m.group("a").strip().lower()
            if a.startswith(STOP):
                action = STOP
            elif n := re.search(r"\d+", a):
                action = int(n.group()) - 1
            else:
                raise TrajectoryFormatError("bad_action", a[:40])
            continue
    close_step()
    if not instruction:
        raise TrajectoryFormatError("no_instruction")
    if not steps:
        raise TrajectoryFormatError("no_steps")
    check_steps(steps)
    return TextTrajectory(instruction=instruction, steps=steps, source="imagined")


# --------------------------------------------------------------------------------- io


def write_jsonl(path: str | Path, trajectories: Iterable[TextTrajectory]) -> Path:
    """Write one trajectory per line, atomically (the file is whole or absent)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        for t in trajectories:
            f.write(json.dumps(t.to_dict(), sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def read_jsonl(path: str | Path) -> list[TextTrajectory]:
    """Read and validate a text-trajectory file; errors name the line."""
    out = []
    with Path(path).open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(TextTrajectory.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TrajectoryFormatError) as e:
                raise VlnavError(f"{path}:{n}: {e}") from None
    return out


# ----------------------------------------------------------------- simulator trajectories


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class ViewDescriber:
    """Describes the 12 views around a point of a house from its SceneSpec.

    A view's description names the room it looks into and up to ``max_objects`` objects
    whose centres are in its 30 degree sector, in line of sight, within ``max_distance``;
    a doorway in the sector is mentioned. A direction is a candidate when the agent could
    walk ``min_free`` metres that way (straight, on the navigation grid).
    """

    def __init__(
        self,
        spec: SceneSpec,
        grid: NavGrid,
        max_distance: float = 5.0,
        max_objects: int = 3,
        min_free: float = 1.0,
    ) -> None:
        self.spec, self.grid = spec, grid
        self.sight = SightMap(spec)
        self.max_distance, self.max_objects, self.min_free = max_distance, max_objects, min_free
        self._types = {r.id: r.type for r in spec.rooms}

    def _cell(self, x: float, z: float) -> tuple[float, float]:
        ox, oz = self.grid.origin
        return (z - oz) / self.grid.cell - 0.5, (x - ox) / self.grid.cell - 0.5

    def navigable(self, p: Sequence[float], heading: float) -> bool:
        x, z = p[0], p[2]
        tx, tz = x - math.sin(heading) * self.min_free, z - math.cos(heading) * self.min_free
        return self.grid.line_of_sight(self._cell(x, z), self._cell(tx, tz))

    def _seen(self, p: Sequence[float]) -> tuple[list[tuple], list[float]]:
        """Objects (bearing, distance, id, name, room) and doorway bearings visible from p."""
        x, z = p[0], p[2]
        objs = []
        for o in self.spec.objects:
            d, _ = box_distance(o, x, z)
            if d <= self.max_distance and self.sight.sees_object(x, z, o):
                name = f"{o.colour} {o.category}"
                objs.append((heading_of(p, o.position), d, o.instance_id, name, o.room))
        objs.sort(key=lambda t: (t[1], t[2]))
        doors = [
            heading_of(p, (d.center[0], 0.0, d.center[1]))
            for d in self.spec.doors
            if math.dist((x, z), d.center) <= 4.0 and self.sight.visible((x, z), d.center)
        ]
        return objs, doors

    def describe(
        self, p: Sequence[float], heading: float, seen: tuple[list, list] | None = None
    ) -> str:
        """The view from ``p`` looking along ``heading``."""
        x, z = p[0], p[2]
        objs, doors = seen if seen is not None else self._seen(p)
        half = math.radians(15)
        found = [o for o in objs if abs(wrap(o[0] - heading)) <= half]
        names: list[str] = []
        for o in found:
            if o[3] not in names and len(names) < self.max_objects:
                names.append(o[3])
        here = self.spec.room_at(x, z)
        # the room this view looks into: the farthest visible point up to 3 m away
        room = here
        for dist in (3.0, 2.0, 1.0):
            q = (x - math.sin(heading) * dist, z - math.cos(heading) * dist)
            r = self.spec.room_at(*q)
            if r is not None and self.sight.visible((x, z), q):
                room = r
                break
        room_name = room.type if room is not None else (here.type if here else "room")
        door = any(abs(wrap(b - heading)) <= half for b in doors)
        if names:
            room_name = self._types.get(found[0][4], room_name)  # the room the objects are in
            things = [_article(n) for n in names] + (["a doorway"] if door else [])
            return f"{_article(room_name)} with {_join(things)}"
        if door and room is not None and here is not None and room.id != here.id:
            return f"a doorway leading to {_article(room_name)}"
        if door:
            return f"a doorway in the {room_name}"
        return f"{_article(room_name)} with bare walls"

    def views(self, p: Sequence[float], heading: float) -> list[tuple[int, bool, str]]:
        """(direction index, navigable, description) for the 12 views at ``p``."""
        seen = self._seen(p)
        out = []
        for k in range(12):
            h = heading + math.radians(30 * k)
            out.append((k, self.navigable(p, h), self.describe(p, h, seen)))
        return out


def describe_views(
    spec: SceneSpec, grid: NavGrid, position: Sequence[float], heading: float
) -> list[Candidate]:
    """The navigable views at ``position`` facing ``heading`` as candidates (simple version of
    the captions the perception stage will provide)."""
    vd = ViewDescriber(spec, grid)
    return [Candidate(DIRECTIONS[k], d) for k, ok, d in vd.views(position, heading) if ok]


def _nodes(path: Sequence[Sequence[float]], min_gap: float = 0.5) -> list[list[float]]:
    """Decision points: the reference path's waypoints, merging ones closer than min_gap."""
    nodes = [list(path[0])]
    for p in path[1:-1]:
        if math.dist((p[0], p[2]), (nodes[-1][0], nodes[-1][2])) >= min_gap:
            nodes.append(list(p))
    last = list(path[-1])
    if len(nodes) > 1 and math.dist((last[0], last[2]), (nodes[-1][0], nodes[-1][2])) < min_gap:
        nodes[-1] = last
    else:
        nodes.append(last)
    return nodes


def simulate_text_trajectory(
    spec: SceneSpec,
    grid: NavGrid,
    episode: Episode,
    instruction: str | None = None,
    describer: ViewDescriber | None = None,
) -> TextTrajectory:
    """The text trajectory of an oracle following ``episode``'s reference path.

    At each waypoint the candidates are the navigable views, plus the view towards the next
    waypoint (always navigable along a taut path), which is the action; the last waypoint
    stops. The agent then faces the direction it walked.
    """
    vd = describer or ViewDescriber(spec, grid)
    nodes = _nodes(episode.reference_path)
    heading = quaternion_to_yaw(list(episode.start_rotation))
    steps = []
    for i, p in enumerate(nodes):
        views = vd.views(p, heading)
        if i == len(nodes) - 1:
            cands = [Candidate(DIRECTIONS[k], d) for k, ok, d in views if ok]
            steps.append(Step(cands, STOP))
            break
        nxt = heading_of(p, nodes[i + 1])
        chosen = round(math.degrees(wrap(nxt - heading)) / 30.0) % 12
        keep = [(k, d) for k, ok, d in views if ok or k == chosen]
        cands = [Candidate(DIRECTIONS[k], d) for k, d in keep]
        steps.append(Step(cands, [k for k, _ in keep].index(chosen)))
        heading = nxt
    return TextTrajectory(
        instruction=instruction if instruction is not None else episode.instruction_text,
        steps=steps,
        source="simulator",
        episode_id=episode.episode_id,
        scene_id=spec.scene_id,
    )
