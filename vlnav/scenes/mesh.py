"""Meshes of a SceneSpec: one coloured triangle mesh per instance id, and their GLB file.

Everything is in world coordinates (y up, metres, floor at y = 0), with per-face colours:
floors in their room's floor colour, walls in the wall colour of the room each face looks
into (a wall between two rooms has two colours), ceilings off-white, door frames wood with
the wall above the door in the walls' colours, objects in their ``rgb``. A room's floor and
wall colours are not in the SceneSpec: ``room_colours`` derives them from the scene seed,
the room id and the room type, so every consumer gets the same ones.

Objects are drawn by the ``shape`` of their category in ``assets/objects.yaml`` (a box for
unknown categories), always inside their oriented box: the local frame has its front at
+z and its base at y = 0, then it is turned by ``yaw`` about +y and moved to ``position``.

Example:
    >>> meshes = build_meshes(spec)            # [(instance_id, trimesh.Trimesh), ...]
    >>> export_glb(spec, "house_0000.glb")     # nodes "bed_57", "wall_12", ...
    >>> [i for i, _ in load_glb("house_0000.glb")] == [i for i, _ in meshes]
    True
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import trimesh

from vlnav import VlnavError
from vlnav.scenes.generator import load_vocabulary
from vlnav.scenes.spec import Room, SceneObject, SceneSpec

CEILING_RGB = (245, 245, 240)
DOOR_FRAME_RGB = (126, 88, 56)
EXTERIOR_RGB = (196, 192, 184)  # the outside of the house
DEFAULT_FLOOR = ("grey", (160, 160, 160))
DEFAULT_WALL = ("white", (238, 236, 230))
SLAB = 0.05  # thickness of floor and ceiling slabs (m)
_FRAME_W, _FRAME_PROUD = 0.06, 0.015  # door trim width and how far it stands off the wall
_NODE = re.compile(r"^(?P<category>.+)_(?P<id>\d+)$")

Part = tuple[np.ndarray, np.ndarray, object]  # vertices, faces, rgb (or "wall" per face)


class RoomColours(NamedTuple):
    floor: str
    floor_rgb: tuple[int, int, int]
    wall: str
    wall_rgb: tuple[int, int, int]


def room_colours(spec: SceneSpec, room: Room, assets_dir: str | None = None) -> RoomColours:
    """The floor and wall colour of a room, drawn from its type's palettes in rooms.yaml.

    Deterministic in (spec.seed, room.id, room.type); types without palettes get grey/white.
    """
    rt = load_vocabulary(assets_dir).rooms.get(room.type)
    rng = np.random.default_rng([spec.seed, room.id, zlib.crc32(room.type.encode())])
    floor, wall = DEFAULT_FLOOR, DEFAULT_WALL
    if rt is not None:
        floors, walls = list(rt.floor_colours.items()), list(rt.wall_colours.items())
        floor = floors[int(rng.integers(len(floors)))]
        wall = walls[int(rng.integers(len(walls)))]
    return RoomColours(floor[0], floor[1], wall[0], wall[1])


def node_name(category: str, instance_id: int) -> str:
    """GLB node name of an instance: ``"dining_chair_41"``."""
    return f"{category.replace(' ', '_')}_{instance_id}"


# --------------------------------------------------------------------- primitives
@functools.cache
def _template(kind: str, sections: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Unit primitives: a box and a y-axis cylinder in [-0.5, 0.5]^3, a unit-radius sphere."""
    if kind == "box":
        m = trimesh.creation.box((1.0, 1.0, 1.0))
    elif kind == "cylinder":
        rot = trimesh.transformations.rotation_matrix(-math.pi / 2, (1, 0, 0))
        m = trimesh.creation.cylinder(radius=0.5, height=1.0, sections=sections, transform=rot)
    else:
        m = trimesh.creation.icosphere(subdivisions=1, radius=1.0)
    v, f = np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)
    v.setflags(write=False)
    f.setflags(write=False)
    return v, f


def _box(lo: tuple[float, float, float], hi: tuple[float, float, float], rgb: object) -> Part:
    v, f = _template("box")
    lo_a, hi_a = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    return (v * (hi_a - lo_a) + (lo_a + hi_a) / 2, f, rgb)


def _cylinder(cx: float, cz: float, r: float, y0: float, y1: float, rgb: object) -> Part:
    v, f = _template("cylinder")
    return (v * (2 * r, y1 - y0, 2 * r) + (cx, (y0 + y1) / 2, cz), f, rgb)


def _ellipsoid(
    center: tuple[float, float, float], radii: tuple[float, float, float], rgb: object
) -> Part:
    v, f = _template("sphere")
    return (v * np.asarray(radii) + np.asarray(center), f, rgb)


# --------------------------------------------------------------------- object shapes
def _shape_parts(shape: str, sx: float, sy: float, sz: float, c: object) -> list[Part]:
    """Parts of one object in its local frame: x in +-sx/2, y in [0, sy], z in +-sz/2."""
    hx, hz = sx / 2, sz / 2
    m = min(hx, hz)
    if shape == "table":
        top = min(0.05, 0.15 * sy)
        leg = min(0.06, 0.15 * min(sx, sz))
        parts = [_box((-hx, sy - top, -hz), (hx, sy, hz), c)]
        for ux in (-hx, hx - leg):
            for uz in (-hz, hz - leg):
                parts.append(_box((ux, 0.0, uz), (ux + leg, sy - top, uz + leg), c))
        return parts
    if shape == "chair":
        seat = min(0.47, 0.5 * sy)
        leg = min(0.045, 0.12 * min(sx, sz))
        parts = [
            _box((-hx, seat - 0.05, -hz), (hx, seat, hz), c),
            _box((-hx, seat, -hz), (hx, sy, -hz + min(0.06, 0.15 * sz)), c),
        ]
        for ux in (-hx, hx - leg):
            for uz in (-hz, hz - leg):
                parts.append(_box((ux, 0.0, uz), (ux + leg, seat - 0.05, uz + leg), c))
        return parts
    if shape == "bed":
        head = min(0.08, 0.1 * sz)
        return [
            _box((-hx, 0.0, -hz + head), (hx, 0.28 * sy, hz), c),
            _box((-hx + 0.03, 0.28 * sy, -hz + head), (hx - 0.03, 0.48 * sy, hz - 0.03), c),
            _box((-hx, 0.0, -hz), (hx, sy, -hz + head), c),
        ]
    if shape == "sofa":
        back = 0.22 * sz
        arm = min(0.18, 0.15 * sx)
        return [
            _box((-hx + arm, 0.0, -hz + back), (hx - arm, 0.5 * sy, hz), c),
            _box((-hx, 0.0, -hz), (hx, sy, -hz + back), c),
            _box((-hx, 0.0, -hz + back), (-hx + arm, 0.7 * sy, hz), c),
            _box((hx - arm, 0.0, -hz + back), (hx, 0.7 * sy, hz), c),
        ]
    if shape == "cylinder":
        return [_cylinder(0.0, 0.0, m, 0.0, sy, c)]
    if shape == "shelf":
        p = min(0.03, 0.1 * sx, 0.1 * sy)
        parts = [
            _box((-hx, 0.0, -hz), (-hx + p, sy, hz), c),
            _box((hx - p, 0.0, -hz), (hx, sy, hz), c),
            _box((-hx + p, 0.0, -hz), (hx - p, sy, -hz + p), c),
        ]
        n = max(2, int(sy / 0.35))
        for i in range(n + 1):
            y = i * (sy - p) / n
            parts.append(_box((-hx + p, y, -hz + p), (hx - p, y + p, hz), c))
        return parts
    if shape == "lamp":
        return [
            _cylinder(0.0, 0.0, 0.6 * m, 0.0, 0.04 * sy, c),
            _cylinder(0.0, 0.0, max(0.008, 0.08 * m), 0.04 * sy, 0.72 * sy, c),
            _cylinder(0.0, 0.0, m, 0.7 * sy, sy, c),
        ]
    if shape == "pole":
        bar = 0.03
        return [
            _cylinder(0.0, 0.0, 0.7 * m, 0.0, 0.03 * sy, c),
            _cylinder(0.0, 0.0, max(0.01, 0.08 * m), 0.03 * sy, sy, c),
            _box((-hx, 0.86 * sy, -bar / 2), (hx, 0.86 * sy + bar, bar / 2), c),
            _box((-bar / 2, 0.9 * sy, -hz), (bar / 2, 0.9 * sy + bar, hz), c),
        ]
    if shape == "toilet":
        tank = 0.25 * sz
        r = min(hx, 0.4 * sz)
        return [
            _box((-hx, 0.45 * sy, -hz), (hx, sy, -hz + tank), c),
            _box((-0.5 * r, 0.0, -hz + 0.05 * sz), (0.5 * r, 0.45 * sy, -hz + tank), c),
            _cylinder(0.0, hz - r, r, 0.0, 0.52 * sy, c),
        ]
    if shape == "plant":
        return [
            _cylinder(0.0, 0.0, 0.6 * m, 0.0, 0.3 * sy, c),
            _ellipsoid((0.0, 0.65 * sy, 0.0), (hx, 0.35 * sy, hz), c),
        ]
    if shape == "tub":
        w = min(0.08, 0.2 * min(sx, sz))
        return [
            _box((-hx, 0.0, -hz), (hx, 0.2 * sy, hz), c),
            _box((-hx, 0.2 * sy, -hz), (hx, sy, -hz + w), c),
            _box((-hx, 0.2 * sy, hz - w), (hx, sy, hz), c),
            _box((-hx, 0.2 * sy, -hz + w), (-hx + w, sy, hz - w), c),
            _box((hx - w, 0.2 * sy, -hz + w), (hx, sy, hz - w), c),
        ]
    if shape == "sink":
        return [
            _cylinder(0.0, 0.0, 0.3 * m, 0.0, 0.82 * sy, c),
            _box((-hx, 0.82 * sy, -hz), (hx, sy, hz), c),
        ]
    return [_box((-hx, 0.0, -hz), (hx, sy, hz), c)]


def object_mesh(obj: SceneObject, shape: str = "box") -> trimesh.Trimesh:
    """The mesh of one object, in world coordinates."""
    sx, sy, sz = obj.size
    parts = _shape_parts(shape, sx, sy, sz, tuple(obj.rgb))
    yaw = math.radians(obj.yaw)
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # about +y: +z -> +x at 90
    moved = [(v @ rot.T + np.asarray(obj.position, dtype=float), f, rgb) for v, f, rgb in parts]
    return _assemble(moved)


# ------------------------------------------------------------------------ assembly
def _assemble(
    parts: list[Part], probe: SceneSpec | None = None, colours: dict | None = None
) -> trimesh.Trimesh:
    """One mesh from parts. Parts coloured "wall" take, per face, the wall colour of the room
    the face looks into (``colours``: room id -> RoomColours); their vertices are not shared,
    so a colour never bleeds into the next face."""
    verts, faces, cols = [], [], []
    n = 0
    for v, f, rgb in parts:
        if rgb == "wall":
            assert probe is not None and colours is not None
            tri = v[f]  # (F, 3, 3)
            normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            normal /= np.linalg.norm(normal, axis=1, keepdims=True)
            points = tri.mean(axis=1) + 0.05 * normal
            face_rgb = []
            for x, _, z in points:
                room = probe.room_at(float(x), float(z))
                face_rgb.append(colours[room.id].wall_rgb if room else EXTERIOR_RGB)
            verts.append(tri.reshape(-1, 3))
            faces.append(np.arange(3 * len(f)).reshape(-1, 3) + n)
            cols.append(np.asarray(face_rgb, dtype=np.uint8))
            n += 3 * len(f)
        else:
            verts.append(v)
            faces.append(f + n)
            cols.append(np.tile(np.asarray(rgb, dtype=np.uint8), (len(f), 1)))
            n += len(v)
    rgb = np.concatenate(cols)
    rgba = np.concatenate([rgb, np.full((len(rgb), 1), 255, dtype=np.uint8)], axis=1)
    return trimesh.Trimesh(
        vertices=np.concatenate(verts),
        faces=np.concatenate(faces),
        face_colors=rgba,
        process=False,
    )


def build_meshes(
    spec: SceneSpec, assets_dir: str | None = None
) -> list[tuple[int, trimesh.Trimesh]]:
    """``(instance_id, mesh)`` for every floor, ceiling, wall, door frame and object.

    Order: per room its floor and ceiling, then walls, doors and objects as in the spec.
    """
    vocab = load_vocabulary(assets_dir)
    colours = {r.id: room_colours(spec, r, assets_dir) for r in spec.rooms}
    h, t = spec.wall_height, spec.wall_thickness
    out: list[tuple[int, trimesh.Trimesh]] = []
    for r in spec.rooms:
        x0, z0, x1, z1 = r.bounds
        floor = _box((x0, -SLAB, z0), (x1, 0.0, z1), colours[r.id].floor_rgb)
        out.append((r.floor_id, _assemble([floor])))
        out.append((r.ceiling_id, _assemble([_box((x0, h, z0), (x1, h + SLAB, z1), CEILING_RGB)])))
    for w in spec.walls:
        (ax, az), (bx, bz) = w.start, w.end
        ht = w.thickness / 2
        lo = (min(ax, bx) - ht, 0.0, min(az, bz) - ht)
        hi = (max(ax, bx) + ht, w.height, max(az, bz) + ht)
        out.append((w.instance_id, _assemble([_box(lo, hi, "wall")], spec, colours)))
    for d in spec.doors:
        parts = _door_parts(d.center, d.width, d.height, d.axis, t, h)
        out.append((d.instance_id, _assemble(parts, spec, colours)))
    for o in spec.objects:
        ot = vocab.objects.get(o.category)
        out.append((o.instance_id, object_mesh(o, ot.shape if ot else "box")))
    return out


def _door_parts(
    center: list[float], width: float, height: float, axis: str, t: float, h: float
) -> list[Part]:
    """Door frame (two jambs and a head, wood) and the wall above it, along +x then turned."""
    # the clear opening lies between the wall boxes, which reach t/2 into the gap
    half = width / 2 - t / 2
    across = t / 2 + _FRAME_PROUD
    top = min(height + _FRAME_W, h)
    parts = [
        _box((-half - _FRAME_W, 0.0, -across), (-half + 0.01, height, across), DOOR_FRAME_RGB),
        _box((half - 0.01, 0.0, -across), (half + _FRAME_W, height, across), DOOR_FRAME_RGB),
        _box((-half - _FRAME_W, height, -across), (half + _FRAME_W, top, across), DOOR_FRAME_RGB),
    ]
    if top < h:
        parts.append(_box((-half, top, -t / 2), (half, h, t / 2), "wall"))
    cx, cz = center
    out = []
    for v, f, rgb in parts:
        v = v.copy()
        if axis == "z":  # the wall runs along z: swap the horizontal axes
            v = v[:, [2, 1, 0]]
            f = f[:, ::-1]  # the swap mirrors: keep the faces pointing outwards
        out.append((v + (cx, 0.0, cz), f, rgb))
    return out


# ------------------------------------------------------------------------------ GLB
def export_glb(spec: SceneSpec, path: str | Path, assets_dir: str | None = None) -> Path:
    """Write the house as a binary glTF: one node per instance, named ``node_name(...)``.

    Node names carry the instance id; each mesh's ``extras`` hold ``instance_id`` and
    ``category`` as well. glTF is y-up like the SceneSpec, so coordinates are unchanged.
    """
    categories = {iid: info["category"] for iid, info in spec.instances().items()}
    scene = trimesh.Scene()
    for iid, mesh in build_meshes(spec, assets_dir):
        name = node_name(categories[iid], iid)
        mesh.metadata.update({"instance_id": int(iid), "category": categories[iid]})
        scene.add_geometry(mesh, node_name=name, geom_name=name)
    path = Path(path)
    path.write_bytes(scene.export(file_type="glb"))
    return path


def load_glb(path: str | Path) -> list[tuple[int, trimesh.Trimesh]]:
    """``(instance_id, mesh)`` pairs of a GLB written by ``export_glb`` (world coordinates)."""
    path = Path(path)
    if not path.is_file():
        raise VlnavError(f"mesh file not found: {path}")
    try:
        scene = trimesh.load_scene(path, file_type="glb", process=False)
    except Exception as e:  # trimesh raises many kinds on a damaged file
        raise VlnavError(f"{path}: not a readable GLB ({e})") from None
    out = []
    for node in scene.graph.nodes_geometry:
        transform, geom = scene.graph[node]
        mesh = scene.geometry[geom]
        match = _NODE.match(str(node))
        if match:
            iid = int(match["id"])
        elif "instance_id" in mesh.metadata:
            iid = int(mesh.metadata["instance_id"])
        else:
            raise VlnavError(f"{path}: node '{node}' carries no instance id")
        if not np.allclose(transform, np.eye(4)):
            mesh = mesh.copy()
            mesh.apply_transform(transform)
        out.append((iid, mesh))
    return out
