"""SceneSpec: the JSON description of one procedural house.

Coordinates follow Habitat: y is up, metres, the floor is y = 0, the floor plan lives in
the (x, z) plane. Everything a backend, a captioner or a speaker needs to know about a
house is here; the GLB mesh is derived from it.

Instance ids are unique positive integers across floors, ceilings, walls, doorways and
objects; 0 means "nothing" (outside the house). ``SceneSpec.instances()`` maps every id
to its category, colour, room and position: it is what ``Simulator.objects()`` returns.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlnav import VlnavError

SCHEMA_VERSION = 1


class SceneSpecError(VlnavError):
    """A SceneSpec file is missing, malformed or inconsistent."""


@dataclass
class Room:
    """One room: an axis-aligned rectangle in the floor plan (polygon kept general)."""

    id: int
    type: str  # "bedroom", "kitchen", ...
    polygon: list[list[float]]  # [[x0, z0], [x1, z0], [x1, z1], [x0, z1]]
    floor_id: int  # instance id of its floor
    ceiling_id: int  # instance id of its ceiling

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, zmin, xmax, zmax)."""
        xs = [p[0] for p in self.polygon]
        zs = [p[1] for p in self.polygon]
        return min(xs), min(zs), max(xs), max(zs)

    @property
    def center(self) -> tuple[float, float]:
        x0, z0, x1, z1 = self.bounds
        return (x0 + x1) / 2, (z0 + z1) / 2

    @property
    def area(self) -> float:
        x0, z0, x1, z1 = self.bounds
        return (x1 - x0) * (z1 - z0)

    def contains(self, x: float, z: float) -> bool:
        x0, z0, x1, z1 = self.bounds
        return x0 <= x <= x1 and z0 <= z <= z1


@dataclass
class Wall:
    """An axis-aligned wall segment (door gaps already cut out) from floor to ``height``."""

    instance_id: int
    start: list[float]  # [x, z] of the centre line
    end: list[float]  # [x, z]; start and end share x or z
    thickness: float
    height: float


@dataclass
class Door:
    """A doorway (an opening with a frame) in the wall shared by two rooms."""

    id: int
    instance_id: int  # the frame's instance id
    rooms: list[int]  # the two room ids it connects
    center: list[float]  # [x, z] on the wall's centre line
    width: float
    height: float
    axis: str  # "x": the wall runs along x (you pass through along z); "z": the reverse


@dataclass
class SceneObject:
    """A piece of furniture or a small object, represented by its oriented box."""

    instance_id: int
    category: str
    colour: str  # colour name, e.g. "red"
    rgb: list[int]  # [r, g, b] 0..255
    room: int  # room id
    position: list[float]  # [x, y, z] centre of the box's base (y = height it stands on)
    yaw: float  # degrees about +y, a multiple of 90
    size: list[float]  # [sx, sy, sz] before rotation
    bbox_min: list[float] = field(default_factory=list)  # world axis-aligned box
    bbox_max: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.bbox_min or not self.bbox_max:
            self.bbox_min, self.bbox_max = self.compute_bbox()

    def compute_bbox(self) -> tuple[list[float], list[float]]:
        sx, sy, sz = self.size
        if round(self.yaw / 90.0) % 2 == 1:
            sx, sz = sz, sx
        x, y, z = self.position
        return [x - sx / 2, y, z - sz / 2], [x + sx / 2, y + sy, z + sz / 2]


@dataclass
class SceneSpec:
    """One house. ``to_json``/``from_json`` round-trip exactly (sorted keys, fixed floats)."""

    scene_id: str
    seed: int
    rooms: list[Room]
    walls: list[Wall]
    doors: list[Door]
    objects: list[SceneObject]
    wall_height: float = 2.6
    wall_thickness: float = 0.1
    schema_version: int = SCHEMA_VERSION

    # ----------------------------------------------------------------- queries
    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, zmin, xmax, zmax) of the whole floor plan, walls included."""
        b = [r.bounds for r in self.rooms]
        t = self.wall_thickness / 2
        return (
            min(v[0] for v in b) - t,
            min(v[1] for v in b) - t,
            max(v[2] for v in b) + t,
            max(v[3] for v in b) + t,
        )

    def room(self, room_id: int) -> Room:
        for r in self.rooms:
            if r.id == room_id:
                return r
        raise KeyError(f"scene {self.scene_id} has no room {room_id}")

    def room_at(self, x: float, z: float) -> Room | None:
        """The room whose rectangle holds (x, z), or None (outside or inside a wall gap)."""
        for r in self.rooms:
            if r.contains(x, z):
                return r
        return None

    def instances(self) -> dict[int, dict[str, Any]]:
        """instance id -> {category, colour, room, room_type, position}, for every id."""
        out: dict[int, dict[str, Any]] = {}
        for r in self.rooms:
            cx, cz = r.center
            out[r.floor_id] = {
                "category": "floor",
                "colour": None,
                "room": r.id,
                "position": [cx, 0.0, cz],
            }
            out[r.ceiling_id] = {
                "category": "ceiling",
                "colour": None,
                "room": r.id,
                "position": [cx, self.wall_height, cz],
            }
        for w in self.walls:
            mx, mz = (w.start[0] + w.end[0]) / 2, (w.start[1] + w.end[1]) / 2
            room = self.room_at(mx, mz)
            out[w.instance_id] = {
                "category": "wall",
                "colour": None,
                "room": room.id if room else None,
                "position": [mx, w.height / 2, mz],
            }
        for d in self.doors:
            out[d.instance_id] = {
                "category": "doorway",
                "colour": None,
                "room": d.rooms[0],
                "rooms": list(d.rooms),
                "position": [d.center[0], d.height / 2, d.center[1]],
            }
        for o in self.objects:
            out[o.instance_id] = {
                "category": o.category,
                "colour": o.colour,
                "room": o.room,
                "position": list(o.position),
            }
        types = {r.id: r.type for r in self.rooms}
        for v in out.values():
            v["room_type"] = types.get(v["room"])
        return out

    # ---------------------------------------------------------------- file io
    def to_dict(self) -> dict[str, Any]:
        return _round(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> SceneSpec:
        try:
            version = d.get("schema_version", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise SceneSpecError(
                    f"{source}: schema_version {version} is not supported (expected {SCHEMA_VERSION})"
                )
            return cls(
                scene_id=str(d["scene_id"]),
                seed=int(d["seed"]),
                rooms=[Room(**r) for r in d["rooms"]],
                walls=[Wall(**w) for w in d["walls"]],
                doors=[Door(**x) for x in d["doors"]],
                objects=[SceneObject(**o) for o in d["objects"]],
                wall_height=float(d.get("wall_height", 2.6)),
                wall_thickness=float(d.get("wall_thickness", 0.1)),
                schema_version=version,
            )
        except SceneSpecError:
            raise
        except KeyError as e:
            raise SceneSpecError(f"{source}: missing key {e} in SceneSpec") from None
        except (TypeError, ValueError) as e:
            raise SceneSpecError(f"{source}: malformed SceneSpec ({e})") from None

    @classmethod
    def load(cls, path: str | Path) -> SceneSpec:
        path = Path(path)
        if not path.is_file():
            raise SceneSpecError(f"scene file not found: {path}")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SceneSpecError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d, source=str(path))


def _round(x: Any, nd: int = 4) -> Any:
    """Round floats so that JSON output is stable across platforms."""
    if isinstance(x, float):
        return round(x, nd) + 0.0
    if isinstance(x, dict):
        return {k: _round(v, nd) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v, nd) for v in x]
    return x
