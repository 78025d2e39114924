"""Seeded procedural houses: rectangular rooms, doorways and furniture, as a SceneSpec.

``generate_house(seed, scene_id)`` draws every random number from
``numpy.random.default_rng(seed)``, so a seed always gives the same house (byte-identical
JSON and GLB). The steps, each a function below:

1. **plan**: how many rooms and of which types (``assets/rooms.yaml``: presence, max count,
   weight of further rooms; a hallway in houses of 6+ rooms with ``hallway_prob``).
2. **layout**: a rectangular footprint of the summed target areas, cut by a treemap of
   axis-aligned binary splits (after a hallway strip along the house, when there is one);
   redrawn until every room has its minimum side and the rooms that share a door-wide
   boundary form a connected graph. Coordinates are whole centimetres on a 10 cm lattice.
3. **doors**: a minimum spanning tree over that graph whose edge costs make rooms open onto
   the hallway and the living room rather than through bedrooms and bathrooms, plus extra
   doors between public rooms with ``extra_door_prob``; doors keep away from wall corners.
4. **walls**: one segment per stretch of boundary between the same two rooms (or a room and
   the outside), with the door gaps cut out; a shared boundary has one wall, not two.
5. **furniture**: per room, the categories of ``assets/objects.yaml`` by their probability and
   count, each proposed by its placement rule and kept only when it stays inside the room,
   overlaps nothing, keeps out of the doorway clearance zones and leaves the room's free
   space (floor minus walls and floor-standing objects, eroded by the agent radius) one
   connected region that reaches every door of the room.

Example:
    >>> spec = generate_house(7, "house_0007")  # a SceneSpec
    >>> spec.save("house_0007.json")
    >>> paths = generate_houses(3, seed=0, out_dir="data/scenes")  # house_0000 ... 0002
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import ndimage

from vlnav import VlnavError
from vlnav.config import ConfigError, check_range
from vlnav.scenes.spec import Door, Room, SceneObject, SceneSpec, Wall

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
HALLWAY = "hallway"
# mesh kinds that vlnav/scenes/mesh.py draws (each inside the object's size box)
SHAPES = (
    "box",
    "table",
    "chair",
    "bed",
    "sofa",
    "cylinder",
    "shelf",
    "lamp",
    "pole",
    "toilet",
    "plant",
    "tub",
    "sink",
)
PLACEMENTS = (
    "against_wall",
    "corner",
    "centre",
    "on_top_of",
    "beside",
    "front_of",
    "facing",
    "around",
)
RELATIONAL = ("on_top_of", "beside", "front_of", "facing", "around")

# objects whose underside is above this height are wall-mounted and do not block the agent
BLOCKING_HEIGHT = 1.0
# least distance (m) from a door's edge to the corner at either end of its wall
DOOR_CORNER_MARGIN = 0.3
# how far a doorway's clearance zone reaches past the door's edges along the wall (m)
DOOR_ZONE_SIDE = 0.1
# a room's longer side is at most this many times its shorter side (hallways excepted)
MAX_ROOM_ASPECT = 3.0
# cost of a door through each room type in the spanning tree (lower opens more rooms)
_DOOR_COST = {HALLWAY: 0.0, "living room": 0.3, "kitchen": 0.8, "dining room": 0.8}
_PRIVATE_COST = 2.0
_BATHROOM_COST = 3.0
# an extra door only joins rooms whose costs add up to at most this (no bathroom doors)
_EXTRA_DOOR_MAX_COST = 2.6
_ATTEMPTS = 24  # proposals per object
_GAP = 0.005  # between an object's back and its wall (keeps the faces apart)
_EPS = 1e-6


# ---------------------------------------------------------------------------- config
@dataclass
class GeneratorConfig:
    """Named randomisation ranges of the house generator; bad values raise ``ConfigError``.

    Example:
        >>> GeneratorConfig(min_rooms=5, max_rooms=5, furniture_density=0.5)
    """

    min_rooms: int = 4  # rooms per house, hallway included
    max_rooms: int = 10
    wall_height: float = 2.6  # m
    wall_thickness: float = 0.1  # m
    door_width: tuple[float, float] = (0.9, 1.1)  # [min, max] m, gap between wall ends
    door_height: float = 2.1  # m
    hallway_width: tuple[float, float] = (1.4, 2.0)  # [min, max] m
    hallway_prob: float = 0.7  # chance of a hallway in houses of 6 rooms or more
    min_room_side: float = 2.2  # m, for every room but the hallway
    extra_door_prob: float = 0.5  # chance of a door on each further public boundary
    door_clearance: float = 0.9  # m kept free in front of each doorway, on both sides
    agent_radius: float = 0.18  # m, the free-space check erodes the floor by this
    furniture_density: float = 1.0  # scales the probability of optional furniture
    grid_cell: float = 0.05  # m, resolution of the free-space check
    assets_dir: str | None = None  # folder with objects.yaml and rooms.yaml; None: shipped

    def __post_init__(self) -> None:
        check_range("min_rooms", self.min_rooms, 1, 16)
        check_range("max_rooms", self.max_rooms, self.min_rooms, 16)
        check_range("wall_height", self.wall_height, 2.2, 4.0)
        check_range("wall_thickness", self.wall_thickness, 0.05, 0.3)
        self.door_width = _check_pair("door_width", self.door_width, 0.7, 1.6)
        check_range("door_height", self.door_height, 1.8, round(self.wall_height - 0.2, 6))
        self.hallway_width = _check_pair("hallway_width", self.hallway_width, 1.0, 3.0)
        check_range("hallway_prob", self.hallway_prob, 0.0, 1.0)
        # a door-wide boundary with its corner margins fits along the shortest room side
        lo_side = round(self.door_width[1] + 2 * DOOR_CORNER_MARGIN, 6)
        check_range("min_room_side", self.min_room_side, lo_side, 5.0)
        check_range("extra_door_prob", self.extra_door_prob, 0.0, 1.0)
        check_range("door_clearance", self.door_clearance, 0.0, 1.5)
        check_range("grid_cell", self.grid_cell, 0.01, 0.2)
        # the agent must pass the narrowest doorway (its clear width is width - thickness)
        hi_radius = round((self.door_width[0] - self.wall_thickness) / 2 - self.grid_cell, 6)
        check_range("agent_radius", self.agent_radius, 0.05, min(0.5, hi_radius))
        check_range("furniture_density", self.furniture_density, 0.0, 2.0)


def _check_pair(name: str, value: Any, lo: float, hi: float) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} should be a pair [min, max]") from None
    if not (lo <= a <= b <= hi):
        raise ConfigError(
            f"{name}={[a, b]} should be [min, max] with {lo:g} <= min <= max <= {hi:g}"
        )
    return (a, b)


# ------------------------------------------------------------------------ vocabulary
@dataclass(frozen=True)
class ObjectType:
    """One category of ``assets/objects.yaml``."""

    name: str
    size: tuple[tuple[float, float], ...]  # [min, max] of width (x), height (y), depth (z)
    colours: tuple[tuple[str, tuple[int, int, int]], ...]  # (name, rgb)
    shape: str
    placement: str  # one of PLACEMENTS
    anchors: tuple[str, ...]  # categories a relational placement refers to
    elevation: tuple[float, float]  # underside height range; (0, 0) stands on the floor
    rooms: dict[str, tuple[float, int, int]]  # room type -> (probability, min, max count)


@dataclass(frozen=True)
class RoomType:
    """One room type of ``assets/rooms.yaml``."""

    name: str
    area: tuple[float, float]
    min_side: float
    presence: float
    max_count: int
    extra_weight: float
    floor_colours: dict[str, tuple[int, int, int]]
    wall_colours: dict[str, tuple[int, int, int]]
    required: tuple[str, ...]
    optional: tuple[str, ...]


@dataclass(frozen=True)
class Vocabulary:
    objects: dict[str, ObjectType]
    rooms: dict[str, RoomType]


def load_vocabulary(assets_dir: str | Path | None = None) -> Vocabulary:
    """The object and room vocabulary, checked for consistency (cached per folder)."""
    return _load_vocabulary(str(Path(assets_dir).resolve() if assets_dir else ASSETS_DIR))


@functools.lru_cache(maxsize=4)
def _load_vocabulary(folder: str) -> Vocabulary:
    obj_path, room_path = Path(folder) / "objects.yaml", Path(folder) / "rooms.yaml"
    for p in (obj_path, room_path):
        if not p.is_file():
            raise VlnavError(f"asset file not found: {p} (set GeneratorConfig.assets_dir)")
    od = yaml.safe_load(obj_path.read_text()) or {}
    rd = yaml.safe_load(room_path.read_text()) or {}
    palette = {
        str(k): _rgb(v, f"{obj_path}: colours.{k}") for k, v in od.get("colours", {}).items()
    }
    objects: dict[str, ObjectType] = {}
    for name, e in (od.get("objects") or {}).items():
        where = f"{obj_path}: {name}"
        try:
            size = tuple(
                _range(e["size"][k], f"{where}.size.{k}", 0.01, 5.0)
                for k in ("width", "height", "depth")
            )
            colours = tuple((c, palette[c]) for c in e["colours"])
            kind, _, anchor = str(e["placement"]).partition(":")
            rooms = {
                str(rt): (float(v["p"]), int(v["count"][0]), int(v["count"][1]))
                for rt, v in e["rooms"].items()
            }
            elevation = _range(e.get("elevation", [0.0, 0.0]), f"{where}.elevation", 0.0, 3.0)
        except KeyError as err:
            raise VlnavError(f"{where}: missing or unknown key {err}") from None
        except (TypeError, ValueError, IndexError) as err:
            raise VlnavError(f"{where}: malformed entry ({err})") from None
        if e["shape"] not in SHAPES:
            raise VlnavError(f"{where}.shape '{e['shape']}' is not one of {list(SHAPES)}")
        if kind not in PLACEMENTS or (kind in RELATIONAL) != bool(anchor):
            raise VlnavError(f"{where}.placement '{e['placement']}' is not a placement rule")
        if not 3 <= len(colours) <= 5:
            raise VlnavError(f"{where}.colours should list 3-5 palette names")
        for rt, (p, lo, hi) in rooms.items():
            if not (0.0 < p <= 1.0 and 1 <= lo <= hi):
                raise VlnavError(f"{where}.rooms.{rt} needs 0 < p <= 1 and 1 <= min <= max count")
        objects[str(name)] = ObjectType(
            name=str(name),
            size=size,
            colours=colours,
            shape=str(e["shape"]),
            placement=kind,
            anchors=tuple(a.strip() for a in anchor.split("|")) if anchor else (),
            elevation=elevation,
            rooms=rooms,
        )
    rooms_out: dict[str, RoomType] = {}
    for name, e in (rd.get("room_types") or {}).items():
        where = f"{room_path}: {name}"
        try:
            rt = RoomType(
                name=str(name),
                area=_range(e["area"], f"{where}.area", 1.0, 200.0),
                min_side=float(e.get("min_side", 0.0)),
                presence=float(e["presence"]),
                max_count=int(e["max_count"]),
                extra_weight=float(e["extra_weight"]),
                floor_colours={str(k): _rgb(v, where) for k, v in e["floor_colours"].items()},
                wall_colours={str(k): _rgb(v, where) for k, v in e["wall_colours"].items()},
                required=tuple(e.get("required") or ()),
                optional=tuple(e.get("optional") or ()),
            )
        except KeyError as err:
            raise VlnavError(f"{where}: missing key {err}") from None
        except (TypeError, ValueError, AttributeError) as err:
            raise VlnavError(f"{where}: malformed entry ({err})") from None
        # rooms.yaml and objects.yaml must tell the same story
        listed = set(rt.required) | set(rt.optional)
        for cat in rt.required + rt.optional:
            if cat not in objects or name not in objects[cat].rooms:
                raise VlnavError(f"{where}: '{cat}' has no entry for '{name}' in {obj_path.name}")
            required = objects[cat].rooms[name][0] >= 1.0
            if required != (cat in rt.required):
                raise VlnavError(
                    f"{where}: '{cat}' is {'required' if required else 'optional'} in "
                    f"{obj_path.name} (p = 1 means required)"
                )
        for cat, ot in objects.items():
            if name in ot.rooms and cat not in listed:
                raise VlnavError(f"{where}: '{cat}' lists '{name}' but the room does not list it")
        rooms_out[str(name)] = rt
    if HALLWAY not in rooms_out:
        raise VlnavError(f"{room_path}: needs a '{HALLWAY}' room type")
    for cat, ot in objects.items():
        for rt in ot.rooms:
            if rt not in rooms_out:
                raise VlnavError(f"{obj_path}: {cat}.rooms names unknown room type '{rt}'")
        for a in ot.anchors:
            if a not in objects:
                raise VlnavError(f"{obj_path}: {cat}.placement names unknown category '{a}'")
    return Vocabulary(objects=objects, rooms=rooms_out)


def _range(v: Any, where: str, lo: float, hi: float) -> tuple[float, float]:
    a, b = (float(x) for x in v)
    if not lo <= a <= b <= hi:
        raise VlnavError(f"{where}={[a, b]} should be [min, max] within [{lo:g}, {hi:g}]")
    return (a, b)


def _rgb(v: Any, where: str) -> tuple[int, int, int]:
    if not (isinstance(v, list) and len(v) == 3 and all(0 <= int(c) <= 255 for c in v)):
        raise VlnavError(f"{where}: colour {v!r} should be [r, g, b] in 0..255")
    return (int(v[0]), int(v[1]), int(v[2]))


# ----------------------------------------------------------------------- public API
def house_seed(seed: int, index: int) -> int:
    """Seed of house ``index`` of a set generated with ``seed`` (independent of the count).

    The same as ``numpy.random.SeedSequence(seed).spawn(n)[index]``, reduced to 32 bits.
    """
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(index),))
    return int(ss.generate_state(1, np.uint32)[0])


def generate_house(seed: int, scene_id: str, config: GeneratorConfig | None = None) -> SceneSpec:
    """One procedural house; the same seed and config always give the same SceneSpec.

    Args:
        seed: a non-negative integer; the only source of randomness.
        scene_id: the SceneSpec's id, e.g. ``"house_0003"``.
        config: ranges of the generator; ``GeneratorConfig()`` when None.
    """
    cfg = config or GeneratorConfig()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise VlnavError(f"seed={seed!r} should be a non-negative integer")
    vocab = load_vocabulary(cfg.assets_dir)
    rng = np.random.default_rng(int(seed))

    types = _plan_rooms(rng, vocab, cfg)
    rects = None
    for round_ in range(12):
        rects = _layout(rng, types, vocab, cfg)
        if rects is not None:
            break
        if round_ % 3 == 2 and len(types) > cfg.min_rooms:
            types = types[:-1]  # the last planned room is the least essential
    if rects is None:
        raise VlnavError(f"{scene_id}: no floor plan found for rooms {types} (seed {seed})")

    if rng.random() < 0.5:  # the long axis is x or z with equal chance
        rects = [(z0, x0, z1, x1) for x0, z0, x1, z1 in rects]
    order = sorted(range(len(rects)), key=lambda k: (rects[k][1], rects[k][0]))
    rects = [rects[k] for k in order]
    types = [types[k] for k in order]

    ids = _Ids()
    t, h = cfg.wall_thickness, cfg.wall_height
    rooms = []
    for k, ((x0, z0, x1, z1), typ) in enumerate(zip(rects, types)):
        x0, z0, x1, z1 = (v / 100 for v in (x0, z0, x1, z1))
        polygon = [[x0, z0], [x1, z0], [x1, z1], [x0, z1]]
        rooms.append(Room(k, typ, polygon, floor_id=ids.next(), ceiling_id=ids.next()))
    door_plan = _plan_doors(rng, rects, types, cfg)
    walls = _build_walls(rects, door_plan, t, h, ids)
    doors = [
        Door(
            id=k,
            instance_id=ids.next(),
            rooms=[a, b],
            center=[c / 100, line / 100] if axis == "x" else [line / 100, c / 100],
            width=w / 100,
            height=cfg.door_height,
            axis=axis,
        )
        for k, (a, b, axis, line, c, w) in enumerate(door_plan)
    ]
    spec = SceneSpec(
        scene_id=scene_id,
        seed=int(seed),
        rooms=rooms,
        walls=walls,
        doors=doors,
        objects=[],
        wall_height=h,
        wall_thickness=t,
    )
    xmin, zmin = spec.bounds[0], spec.bounds[1]
    origin = (xmin - 2 * cfg.grid_cell, zmin - 2 * cfg.grid_cell)  # the navgrid's lattice
    for room in rooms:
        spec.objects += _Furnisher(rng, vocab, cfg, spec, room, origin, ids).furnish()
    # what the JSON file holds (floats rounded), so a loaded file equals the returned spec
    return SceneSpec.from_dict(spec.to_dict())


def generate_houses(
    count: int,
    seed: int,
    out_dir: str | Path,
    config: GeneratorConfig | None = None,
    progress: bool = True,
) -> list[Path]:
    """Generate ``count`` houses ``house_0000``, ``house_0001``, ... into ``out_dir``.

    House i goes to ``out_dir/house_<i>/house_<i>.json`` (SceneSpec) and ``.glb`` (mesh),
    with seed ``house_seed(seed, i)``, so a house does not depend on ``count``. Files are
    written atomically. Returns the JSON paths.
    """
    from tqdm import tqdm

    from vlnav.scenes.mesh import export_glb

    if count < 0:
        raise VlnavError(f"count={count} should be >= 0")
    cfg = config or GeneratorConfig()
    out = Path(out_dir)
    paths: list[Path] = []
    for i in tqdm(range(count), desc="houses", disable=not progress, leave=False):
        scene_id = f"house_{i:04d}"
        spec = generate_house(house_seed(seed, i), scene_id, cfg)
        folder = out / scene_id
        folder.mkdir(parents=True, exist_ok=True)
        json_path, glb_path = folder / f"{scene_id}.json", folder / f"{scene_id}.glb"
        tmp = folder / f"tmp-{scene_id}.json"
        spec.save(tmp)
        tmp.replace(json_path)
        tmp = folder / f"tmp-{scene_id}.glb"
        export_glb(spec, tmp)
        tmp.replace(glb_path)
        paths.append(json_path)
    return paths


class _Ids:
    """Instance ids: 1, 2, 3, ... (0 means nothing)."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last += 1
        return self.last


# -------------------------------------------------------------------------- 1. plan
def _plan_rooms(rng: np.random.Generator, vocab: Vocabulary, cfg: GeneratorConfig) -> list[str]:
    """Room types of one house, the most essential first."""
    n = int(rng.integers(cfg.min_rooms, cfg.max_rooms + 1))
    types: list[str] = []
    if n >= 6 and rng.random() < cfg.hallway_prob:
        types.append(HALLWAY)
    for name, rt in vocab.rooms.items():
        if name != HALLWAY and rt.presence > 0 and rng.random() < rt.presence:
            types.append(name)
    types = types[:n]
    while len(types) < n:
        extra = [name for name, rt in vocab.rooms.items() if rt.extra_weight > 0]
        names = [name for name in extra if types.count(name) < vocab.rooms[name].max_count]
        names = names or extra  # every type at its max count: go past it rather than stop
        if not names:
            break
        w = np.array([vocab.rooms[name].extra_weight for name in names])
        types.append(names[int(rng.choice(len(names), p=w / w.sum()))])
    return types


# ------------------------------------------------------------------------ 2. layout
Rect = tuple[int, int, int, int]  # (x0, z0, x1, z1) in centimetres


def _snap(v: float, step: int = 10) -> int:
    return int(round(v / step)) * step


def _layout(
    rng: np.random.Generator, types: list[str], vocab: Vocabulary, cfg: GeneratorConfig
) -> list[Rect] | None:
    """Rectangles (cm) for ``types`` tiling a rectangle, or None when the draws failed."""
    min_side = _snap(cfg.min_room_side * 100, 1)
    need = _snap((cfg.door_width[1] + 2 * DOOR_CORNER_MARGIN) * 100, 1)
    hall = [k for k, t in enumerate(types) if t == HALLWAY]
    idx = [k for k, t in enumerate(types) if t != HALLWAY]
    # least side of each room (cm); 0 for the hallway, whose strip has its own width
    sides = [
        0 if t == HALLWAY else max(min_side, _snap(vocab.rooms[t].min_side * 100, 1)) for t in types
    ]
    for _ in range(20):
        areas = {k: rng.uniform(*vocab.rooms[types[k]].area) * 1e4 for k in idx}
        total = sum(areas.values())
        aspect = rng.uniform(1.0, 1.6)
        hw = _snap(rng.uniform(*cfg.hallway_width) * 100) if hall else 0
        # depth D and width W = aspect * D with W * D = total + W * hw
        a = aspect * hw
        depth = (a + math.sqrt(a * a + 4 * aspect * total)) / (2 * aspect)
        width = _snap(aspect * depth)
        depth = _snap(total / width + hw)
        for _ in range(4):
            rects: dict[int, Rect] = {}
            items = [(k, areas[k]) for k in idx]
            if hall:
                bottom, top = _halve(rng, items)
                sb, st = sum(v for _, v in bottom), sum(v for _, v in top)
                db = _snap((depth - hw) * sb / (sb + st))
                db = min(max(db, min_side), depth - hw - min_side)
                rects[hall[0]] = (0, db, width, db + hw)
                _treemap(rng, (0, 0, width, db), bottom, min_side, rects)
                _treemap(rng, (0, db + hw, width, depth), top, min_side, rects)
            else:
                _treemap(rng, (0, 0, width, depth), items, min_side, rects)
            out = [rects[k] for k in range(len(types))]
            if _layout_ok(out, sides, need):
                return out
    return None


def _halve(
    rng: np.random.Generator, items: list[tuple[int, float]]
) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """A random order of items cut where the two halves' areas are closest."""
    items = [items[k] for k in rng.permutation(len(items))]
    acc = np.cumsum([v for _, v in items])
    k = int(np.argmin(np.abs(acc[:-1] - acc[-1] / 2))) + 1
    return items[:k], items[k:]


def _treemap(
    rng: np.random.Generator,
    rect: Rect,
    items: list[tuple[int, float]],
    min_side: int,
    out: dict[int, Rect],
) -> None:
    """Cut rect into one rectangle per item, areas roughly proportional to the items'."""
    if len(items) == 1:
        out[items[0][0]] = rect
        return
    x0, z0, x1, z1 = rect
    cut_x = (x1 - x0) >= (z1 - z0)  # cut across the longer side
    if rng.random() < 0.2:
        cut_x = not cut_x
    first, second = _halve(rng, items)
    share = sum(v for _, v in first) / (sum(v for _, v in first) + sum(v for _, v in second))
    length = (x1 - x0) if cut_x else (z1 - z0)
    c = min(max(_snap(length * share), min_side), length - min_side)
    if cut_x:
        _treemap(rng, (x0, z0, x0 + c, z1), first, min_side, out)
        _treemap(rng, (x0 + c, z0, x1, z1), second, min_side, out)
    else:
        _treemap(rng, (x0, z0, x1, z0 + c), first, min_side, out)
        _treemap(rng, (x0, z0 + c, x1, z1), second, min_side, out)


def _layout_ok(rects: list[Rect], sides: list[int], need: int) -> bool:
    for (x0, z0, x1, z1), side in zip(rects, sides):
        short, long = sorted((x1 - x0, z1 - z0))
        if short <= 0 or (side and (short < side or long > MAX_ROOM_ASPECT * short)):
            return False
    parent = list(range(len(rects)))
    for a, b, *_ in _shared_boundaries(rects, need):
        parent[_find(parent, a)] = _find(parent, b)
    return len({_find(parent, k) for k in range(len(rects))}) == 1


def _find(parent: list[int], k: int) -> int:
    while parent[k] != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return k


def _shared_boundaries(rects: list[Rect], need: int) -> list[tuple[int, int, str, int, int, int]]:
    """(a, b, axis, line, lo, hi) for rooms a < b sharing a wall at least ``need`` cm long.

    axis "x": the wall runs along x at z = line, over x in [lo, hi]; "z": the reverse.
    """
    out = []
    for a in range(len(rects)):
        for b in range(a + 1, len(rects)):
            ax0, az0, ax1, az1 = rects[a]
            bx0, bz0, bx1, bz1 = rects[b]
            if ax1 == bx0 or bx1 == ax0:
                lo, hi = max(az0, bz0), min(az1, bz1)
                if hi - lo >= need:
                    out.append((a, b, "z", ax1 if ax1 == bx0 else ax0, lo, hi))
            elif az1 == bz0 or bz1 == az0:
                lo, hi = max(ax0, bx0), min(ax1, bx1)
                if hi - lo >= need:
                    out.append((a, b, "x", az1 if az1 == bz0 else az0, lo, hi))
    return out


# ------------------------------------------------------------------------- 3. doors
def _door_cost(t: str) -> float:
    if t == "bathroom":
        return _BATHROOM_COST
    return _DOOR_COST.get(t, _PRIVATE_COST)


def _plan_doors(
    rng: np.random.Generator, rects: list[Rect], types: list[str], cfg: GeneratorConfig
) -> list[tuple[int, int, str, int, float, float]]:
    """Doors as (room a, room b, axis, line cm, centre cm, width cm)."""
    need = _snap((cfg.door_width[1] + 2 * DOOR_CORNER_MARGIN) * 100, 1)
    edges = _shared_boundaries(rects, need)
    cost = [_door_cost(types[a]) + _door_cost(types[b]) for a, b, *_ in edges]
    noisy = [c + rng.uniform(0.0, 0.5) for c in cost]
    parent = list(range(len(rects)))
    chosen = []
    for k in sorted(range(len(edges)), key=lambda k: (noisy[k], k)):  # Kruskal
        ra, rb = _find(parent, edges[k][0]), _find(parent, edges[k][1])
        if ra != rb:
            parent[ra] = rb
            chosen.append(k)
    for k in range(len(edges)):
        extra = k not in chosen and cost[k] <= _EXTRA_DOOR_MAX_COST
        if extra and rng.random() < cfg.extra_door_prob:
            chosen.append(k)
    margin = DOOR_CORNER_MARGIN * 100
    doors = []
    for k in sorted(chosen):
        a, b, axis, line, lo, hi = edges[k]
        w = float(_snap(rng.uniform(*cfg.door_width) * 100, 1))
        c_lo = math.ceil((lo + margin + w / 2) / 5) * 5
        c_hi = math.floor((hi - margin - w / 2) / 5) * 5
        c = float(c_lo + 5 * int(rng.integers(0, (c_hi - c_lo) // 5 + 1)))
        doors.append((a, b, axis, line, c, w))
    return doors


# ------------------------------------------------------------------------- 4. walls
def _build_walls(
    rects: list[Rect],
    doors: list[tuple[int, int, str, int, float, float]],
    t: float,
    h: float,
    ids: _Ids,
) -> list[Wall]:
    """Wall segments along every boundary line, split wherever the rooms beside it change.

    A segment's start and end are on the wall's centre line; like the doorway gaps, its box
    reaches ``t / 2`` past them (which closes the corners).
    """
    walls: list[Wall] = []
    for axis in ("x", "z"):
        # axis "x": lines of constant z, intervals along x; "z": the reverse
        lo_i, hi_i, a_i, b_i = (1, 3, 0, 2) if axis == "x" else (0, 2, 1, 3)
        lines = sorted({r[lo_i] for r in rects} | {r[hi_i] for r in rects})
        for line in lines:
            beside = [r for r in rects if r[hi_i] == line or r[lo_i] == line]
            ends = sorted({r[a_i] for r in beside} | {r[b_i] for r in beside})
            gaps = sorted((c, w) for _, _, ax, ln, c, w in doors if ax == axis and ln == line)
            for p, q in zip(ends, ends[1:]):
                if not any(r[a_i] <= p and r[b_i] >= q for r in beside):
                    continue
                pieces, cur = [], float(p)
                for c, w in gaps:
                    if p < c < q:
                        pieces.append((cur, c - w / 2))
                        cur = c + w / 2
                pieces.append((cur, float(q)))
                for s, e in pieces:
                    if axis == "x":
                        start, end = [s / 100, line / 100], [e / 100, line / 100]
                    else:
                        start, end = [line / 100, s / 100], [line / 100, e / 100]
                    walls.append(Wall(ids.next(), start, end, t, h))
    return walls


# --------------------------------------------------------------------- 5. furniture
def _front(yaw: float) -> tuple[float, float]:
    """(x, z) unit vector the object's front faces after a yaw (degrees about +y)."""
    r = math.radians(yaw)
    return (round(math.sin(r)), round(math.cos(r)))


def _right(yaw: float) -> tuple[float, float]:
    """(x, z) image of the object's local +x after the yaw."""
    r = math.radians(yaw)
    return (round(math.cos(r)), -round(math.sin(r)))


def _overlap(amin: list[float], amax: list[float], bmin: list[float], bmax: list[float]) -> bool:
    return all(amin[k] < bmax[k] - 1e-4 and bmin[k] < amax[k] - 1e-4 for k in range(len(amin)))


class _FreeSpace:
    """Where the agent fits in one room, computed exactly as the navigation grid does.

    ``vlnav.sim.navgrid.free_space_mask`` rasterises rooms, doorway gaps, walls and
    floor-standing objects (a cell is blocked when its centre is inside one) and keeps the
    walkable cells farther than ``radius`` from every blocked cell. This class repeats that
    on the same lattice, in a window around one room (the radius only looks that far), so it
    can test each new object in well under a millisecond: the room's free cells must stay one
    8-connected region that holds a cell in front of every door of the room.
    """

    def __init__(
        self,
        spec: SceneSpec,
        room: Room,
        origin: tuple[float, float],
        cell: float,
        radius: float,
        door_points: list[tuple[float, float]],
    ) -> None:
        self.origin, self.cell, self.radius = origin, cell, radius
        x0, z0, x1, z1 = room.bounds
        pad = spec.wall_thickness / 2 + radius + 3 * cell
        gx, gz = origin
        self.j0 = max(int(math.floor((x0 - pad - gx) / cell)), 0)
        self.i0 = max(int(math.floor((z0 - pad - gz) / cell)), 0)
        nj = int(math.ceil((x1 + pad - gx) / cell)) - self.j0
        ni = int(math.ceil((z1 + pad - gz) / cell)) - self.i0
        self.walk = np.zeros((ni, nj), dtype=bool)
        box = (x0 - pad, z0 - pad, x1 + pad, z1 + pad)
        for r in spec.rooms:
            if _touches(r.bounds, box):
                self._rect(self.walk, *r.bounds, True)
        t = spec.wall_thickness
        for d in spec.doors:
            cx, cz = d.center
            h = d.width / 2
            gap = (
                (cx - h, cz - t, cx + h, cz + t)
                if d.axis == "x"
                else (cx - t, cz - h, cx + t, cz + h)
            )
            if _touches(gap, box):
                self._rect(self.walk, *gap, True)
        for w in spec.walls:
            ht = w.thickness / 2
            (ax, az), (bx, bz) = w.start, w.end
            rect = (min(ax, bx) - ht, min(az, bz) - ht, max(ax, bx) + ht, max(az, bz) + ht)
            if _touches(rect, box):
                self._rect(self.walk, *rect, False)
        self.in_room = np.zeros_like(self.walk)
        self._rect(self.in_room, x0, z0, x1, z1, True)
        self.targets = []
        free = self._free(self.walk)
        for x, z in door_points:
            i = int(math.floor((z - gz) / cell)) - self.i0
            j = int(math.floor((x - gx) / cell)) - self.j0
            if 0 <= i < ni and 0 <= j < nj and free[i, j]:
                self.targets.append((i, j))

    def _rect(self, a: np.ndarray, x0: float, z0: float, x1: float, z1: float, v: bool) -> None:
        """Set the cells of ``a`` whose centre lies in [x0, x1] x [z0, z1] (navgrid's rule)."""
        gx, gz = self.origin
        c = self.cell
        j0 = max(int(math.ceil((x0 - gx) / c - 0.5)), 0) - self.j0
        j1 = int(math.floor((x1 - gx) / c - 0.5)) - self.j0
        i0 = max(int(math.ceil((z0 - gz) / c - 0.5)), 0) - self.i0
        i1 = int(math.floor((z1 - gz) / c - 0.5)) - self.i0
        j0, i0 = max(j0, 0), max(i0, 0)
        if j1 >= j0 and i1 >= i0:
            a[i0 : i1 + 1, j0 : j1 + 1] = v

    def _free(self, walk: np.ndarray) -> np.ndarray:
        dist = ndimage.distance_transform_edt(walk) * self.cell - self.cell / 2
        return walk & (dist > self.radius) & self.in_room

    def try_block(self, x0: float, z0: float, x1: float, z1: float) -> bool:
        """Block the box [x0, x1] x [z0, z1] unless that cuts the room; say if it was done."""
        walk = self.walk.copy()
        self._rect(walk, x0, z0, x1, z1, False)
        free = self._free(walk)
        if not all(free[t] for t in self.targets):
            return False
        _, n = ndimage.label(free, structure=np.ones((3, 3)))
        if n != 1:
            return False
        self.walk = walk
        return True


def _touches(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


class _Furnisher:
    """Places the furniture of one room by the vocabulary's rules."""

    def __init__(
        self,
        rng: np.random.Generator,
        vocab: Vocabulary,
        cfg: GeneratorConfig,
        spec: SceneSpec,
        room: Room,
        origin: tuple[float, float],
        ids: _Ids,
    ) -> None:
        self.rng, self.vocab, self.cfg, self.room, self.ids = rng, vocab, cfg, room, ids
        self.wall_height = spec.wall_height
        x0, z0, x1, z1 = room.bounds
        ht = spec.wall_thickness / 2
        self.interior = (x0 + ht, z0 + ht, x1 - ht, z1 - ht)
        self.objects: list[SceneObject] = []
        self.zones = []  # doorway clearance boxes (x0, z0, x1, z1)
        door_points = []
        inset = ht + cfg.agent_radius + 2.5 * cfg.grid_cell
        clr, side = cfg.door_clearance, DOOR_ZONE_SIDE
        for d in spec.doors:
            if room.id not in d.rooms:
                continue
            cx, cz = d.center
            half = d.width / 2 + side
            if d.axis == "x":
                self.zones.append((cx - half, cz - clr, cx + half, cz + clr))
                door_points.append((cx, cz + inset if abs(cz - z0) < _EPS else cz - inset))
            else:
                self.zones.append((cx - clr, cz - half, cx + clr, cz + half))
                door_points.append((cx + inset if abs(cx - x0) < _EPS else cx - inset, cz))
        self.space = _FreeSpace(spec, room, origin, cfg.grid_cell, cfg.agent_radius, door_points)

    # ------------------------------------------------------------------ driver
    def furnish(self) -> list[SceneObject]:
        rt = self.vocab.rooms.get(self.room.type)
        if rt is None:
            return []
        for cat in rt.required + rt.optional:
            ot = self.vocab.objects[cat]
            p, lo, hi = ot.rooms[rt.name]
            if cat not in rt.required:
                p = min(1.0, p * self.cfg.furniture_density)
            if self.rng.random() >= p:
                continue
            count = int(self.rng.integers(lo, hi + 1))
            shared = None  # a set (chairs at a table, a pair of nightstands) matches
            if ot.placement in ("around", "beside"):
                shared = (self._sample_size(ot), self._sample_colour(ot))
            for _ in range(count):
                if not self._place(ot, shared, required=cat in rt.required):
                    break
        return self.objects

    def _sample_size(self, ot: ObjectType, scale: float = 1.0) -> list[float]:
        """A size drawn from the category's ranges; ``scale`` < 1 keeps to their lower part."""
        return [
            round(float(lo + (hi - lo) * self.rng.uniform(0.0, scale)), 2) for lo, hi in ot.size
        ]

    def _sample_colour(self, ot: ObjectType) -> tuple[str, tuple[int, int, int]]:
        return ot.colours[int(self.rng.integers(len(ot.colours)))]

    def _place(self, ot: ObjectType, shared: Any, required: bool) -> bool:
        """Try proposals until one is valid; required ones get more tries, ever smaller."""
        size, colour = shared if shared else (None, self._sample_colour(ot))
        attempts = _ATTEMPTS * (3 if required else 1)
        for k in range(attempts):
            scale = 1.0 - k / attempts
            pose = self._propose(ot, list(size) if size else self._sample_size(ot, scale))
            if pose is None:
                return False  # nothing to stand on or beside
            if not pose:
                continue
            x, y, z, yaw, sz = pose
            obj = SceneObject(
                instance_id=0,
                category=ot.name,
                colour=colour[0],
                rgb=list(colour[1]),
                room=self.room.id,
                position=[round(x, 3), round(y, 3), round(z, 3)],
                yaw=float(yaw % 360),
                size=[round(v, 2) for v in sz],
            )
            if self._valid(obj, ot):
                obj.instance_id = self.ids.next()
                self.objects.append(obj)
                return True
        return False

    # --------------------------------------------------------------- proposals
    def _uniform(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, max(lo, hi)))  # hi < lo only by rounding

    def _propose(self, ot: ObjectType, size: list[float]) -> tuple | None:
        """(x, y, z, yaw, size) of a candidate pose; () for no fit this time; None: give up."""
        kind = ot.placement
        if kind in RELATIONAL:
            anchors = [o for o in self.objects if o.category in ot.anchors]
            if not anchors:
                return None
            a = anchors[int(self.rng.integers(len(anchors)))]
            return getattr(self, f"_{kind}")(a, size)
        y = float(self.rng.uniform(*ot.elevation))
        if kind == "centre":
            return self._centre(size, y)
        return self._at_wall(size, y, corner=kind == "corner")

    def _at_wall(self, size: list[float], y: float, corner: bool) -> tuple:
        w, _, d = size
        ix0, iz0, ix1, iz1 = self.interior
        lengths = np.array([ix1 - ix0, iz1 - iz0, ix1 - ix0, iz1 - iz0])
        side = int(self.rng.choice(4, p=lengths / lengths.sum()))
        lo, hi = (ix0, ix1) if side % 2 == 0 else (iz0, iz1)
        if hi - lo < w + 2 * _GAP or (iz1 - iz0 if side % 2 == 0 else ix1 - ix0) < d + _GAP:
            return ()
        if corner:
            along = lo + w / 2 + _GAP if self.rng.random() < 0.5 else hi - w / 2 - _GAP
        else:
            along = self._uniform(lo + w / 2 + _GAP, hi - w / 2 - _GAP)
        # side 0: the wall at z min (the object faces +z, yaw 0); 1: x min (yaw 90);
        # 2: z max (yaw 180); 3: x max (yaw 270)
        if side == 0:
            return (along, y, iz0 + d / 2 + _GAP, 0.0, size)
        if side == 1:
            return (ix0 + d / 2 + _GAP, y, along, 90.0, size)
        if side == 2:
            return (along, y, iz1 - d / 2 - _GAP, 180.0, size)
        return (ix1 - d / 2 - _GAP, y, along, 270.0, size)

    def _centre(self, size: list[float], y: float) -> tuple:
        w, _, d = size
        ix0, iz0, ix1, iz1 = self.interior
        long_x = (ix1 - ix0) >= (iz1 - iz0)
        yaw = (0.0 if long_x == (w >= d) else 90.0) + 180.0 * int(self.rng.integers(2))
        ex, ez = (w, d) if yaw % 180 == 0 else (d, w)
        m = 0.6  # room for chairs and for walking round
        if ix1 - ix0 < ex + 2 * m or iz1 - iz0 < ez + 2 * m:
            return ()
        x = self._uniform(ix0 + m + ex / 2, ix1 - m - ex / 2)
        z = self._uniform(iz0 + m + ez / 2, iz1 - m - ez / 2)
        return (x, y, z, yaw, size)

    def _local(self, a: SceneObject, u: float, v: float) -> tuple[float, float]:
        """World (x, z) of the point (u, v) in the anchor's frame (x right, z front)."""
        (rx, rz), (fx, fz) = _right(a.yaw), _front(a.yaw)
        return (a.position[0] + rx * u + fx * v, a.position[2] + rz * u + fz * v)

    def _on_top_of(self, a: SceneObject, size: list[float]) -> tuple:
        aw, ah, ad = a.size
        w, h, d = min(size[0], aw - 0.04), size[1], min(size[2], ad - 0.04)
        if w < 0.05 or d < 0.05:
            return ()
        u = float(self.rng.uniform(-1, 1)) * (aw - w) / 2 * 0.8
        v = float(self.rng.uniform(-1, 1)) * (ad - d) / 2 * 0.8
        x, z = self._local(a, u, v)
        return (x, a.position[1] + ah, z, a.yaw, [w, h, d])

    def _beside(self, a: SceneObject, size: list[float]) -> tuple:
        aw, _, ad = a.size
        w, _, d = size
        s = 1.0 if self.rng.random() < 0.5 else -1.0
        gap = float(self.rng.uniform(0.02, 0.1))
        x, z = self._local(a, s * (aw / 2 + gap + w / 2), (d - ad) / 2)  # backs aligned
        return (x, 0.0, z, a.yaw, size)

    def _front_of(self, a: SceneObject, size: list[float]) -> tuple:
        _, _, ad = a.size
        gap = float(self.rng.uniform(0.35, 0.5))
        x, z = self._local(a, 0.0, ad / 2 + gap + size[2] / 2)
        return (x, 0.0, z, a.yaw, size)

    def _facing(self, a: SceneObject, size: list[float]) -> tuple:
        aw, _, ad = a.size
        u = float(self.rng.uniform(-1, 1)) * max(aw - size[0], 0.0) / 4
        x, z = self._local(a, u, ad / 2 + float(self.rng.uniform(0.02, 0.1)) + size[2] / 2)
        return (x, 0.0, z, a.yaw + 180.0, size)

    def _around(self, a: SceneObject, size: list[float]) -> tuple:
        aw, _, ad = a.size
        w, _, d = size
        gap = 0.05
        slots = []  # (u, v, yaw relative to the anchor) of each seat, facing the table
        k = max(1, int(aw // 0.6))
        for i in range(k):
            u = -aw / 2 + aw * (i + 0.5) / k
            slots.append((u, ad / 2 + gap + d / 2, 180.0))
            slots.append((u, -(ad / 2 + gap + d / 2), 0.0))
        if ad >= w:
            slots.append((aw / 2 + gap + d / 2, 0.0, 270.0))
            slots.append((-(aw / 2 + gap + d / 2), 0.0, 90.0))
        u, v, rel = slots[int(self.rng.integers(len(slots)))]
        x, z = self._local(a, u, v)
        return (x, 0.0, z, a.yaw + rel, size)

    # --------------------------------------------------------------- validity
    def _valid(self, obj: SceneObject, ot: ObjectType) -> bool:
        (x0, y0, z0), (x1, y1, z1) = obj.bbox_min, obj.bbox_max
        ix0, iz0, ix1, iz1 = self.interior
        if x0 < ix0 - _EPS or z0 < iz0 - _EPS or x1 > ix1 + _EPS or z1 > iz1 + _EPS:
            return False
        if y1 > self.wall_height - 0.05:
            return False
        for zx0, zz0, zx1, zz1 in self.zones:
            if x0 < zx1 and zx0 < x1 and z0 < zz1 and zz0 < z1:
                return False
        for o in self.objects:
            if _overlap(obj.bbox_min, obj.bbox_max, o.bbox_min, o.bbox_max):
                return False
        if ot.placement == "on_top_of" or y0 >= BLOCKING_HEIGHT:
            return True  # inside its support's footprint, or wall-mounted: blocks nothing new
        return self.space.try_block(x0, z0, x1, z1)
