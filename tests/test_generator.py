"""The procedural house generator, its vocabulary and the mesh / GLB export."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from vlnav import VlnavError
from vlnav.config import from_dict
from vlnav.scenes.generator import (
    DOOR_CORNER_MARGIN,
    GeneratorConfig,
    generate_house,
    generate_houses,
    house_seed,
    load_vocabulary,
)
from vlnav.scenes.mesh import build_meshes, export_glb, load_glb, object_mesh, room_colours
from vlnav.scenes.spec import SceneObject, SceneSpec
from vlnav.sim.navgrid import BLOCKING_HEIGHT, free_space_mask

N_HOUSES = 20
TOL = 1e-3


@pytest.fixture(scope="module")
def houses() -> list[SceneSpec]:
    return [generate_house(house_seed(0, i), f"house_{i:04d}") for i in range(N_HOUSES)]


@pytest.fixture(scope="module")
def vocab():
    return load_vocabulary()


def interior(spec: SceneSpec, room_id: int) -> tuple[float, float, float, float]:
    x0, z0, x1, z1 = spec.room(room_id).bounds
    t = spec.wall_thickness / 2
    return x0 + t, z0 + t, x1 - t, z1 - t


def door_zone(spec: SceneSpec, d, depth: float = 0.9) -> tuple[float, float, float, float]:
    cx, cz = d.center
    half = d.width / 2
    if d.axis == "x":
        return cx - half, cz - depth, cx + half, cz + depth
    return cx - depth, cz - half, cx + depth, cz + half


def overlaps_2d(a, b) -> bool:
    return a[0] < b[2] - TOL and b[0] < a[2] - TOL and a[1] < b[3] - TOL and b[1] < a[3] - TOL


# ------------------------------------------------------------------------ vocabulary
def test_vocabulary_is_rich_and_consistent(vocab):
    assert len(vocab.objects) >= 30
    assert len(vocab.rooms) >= 7
    for ot in vocab.objects.values():
        assert 3 <= len(ot.colours) <= 5, ot.name
        assert all(lo <= hi for lo, hi in ot.size), ot.name
        assert ot.rooms, ot.name
    for rt in vocab.rooms.values():
        for cat in rt.required:
            assert vocab.objects[cat].rooms[rt.name][0] == 1.0


@pytest.mark.parametrize("yaw", [0.0, 90.0, 180.0, 270.0])
def test_every_shape_stays_inside_its_box(vocab, yaw):
    for ot in vocab.objects.values():
        size = [hi for _, hi in ot.size]
        obj = SceneObject(1, ot.name, "red", [200, 0, 0], 0, [1.0, 0.3, -2.0], yaw, size)
        lo, hi = object_mesh(obj, ot.shape).bounds
        assert np.all(lo >= np.array(obj.bbox_min) - 1e-6), (ot.name, yaw)
        assert np.all(hi <= np.array(obj.bbox_max) + 1e-6), (ot.name, yaw)
        # and it fills the box (no shape is a shrunken stand-in)
        assert np.allclose(hi[1], obj.bbox_max[1]) and np.allclose(lo[1], obj.bbox_min[1])


# ------------------------------------------------------------------------ floor plan
def test_room_counts_and_types(houses):
    types = set()
    for spec in houses:
        assert 4 <= len(spec.rooms) <= 10
        kinds = [r.type for r in spec.rooms]
        types |= set(kinds)
        assert kinds.count("kitchen") <= 1 and kinds.count("living room") <= 1
        for r in spec.rooms:
            x0, z0, x1, z1 = r.bounds
            short = min(x1 - x0, z1 - z0)
            if r.type == "hallway":
                assert 1.4 - TOL <= short <= 2.0 + TOL
            else:
                assert short >= 2.2 - TOL
    assert len(types) >= 7
    assert sum("living room" in {r.type for r in s.rooms} for s in houses) >= N_HOUSES * 0.7


def test_rooms_tile_the_footprint(houses):
    for spec in houses:
        t = spec.wall_thickness
        x0, z0, x1, z1 = spec.bounds
        assert sum(r.area for r in spec.rooms) == pytest.approx((x1 - x0 - t) * (z1 - z0 - t))
        for a, b in itertools.combinations(spec.rooms, 2):
            assert not overlaps_2d(a.bounds, b.bounds), (spec.scene_id, a.id, b.id)


def test_instance_ids_unique_and_positive(houses):
    for spec in houses:
        ids = [r.floor_id for r in spec.rooms] + [r.ceiling_id for r in spec.rooms]
        ids += [w.instance_id for w in spec.walls] + [d.instance_id for d in spec.doors]
        ids += [o.instance_id for o in spec.objects]
        assert len(ids) == len(set(ids)) and min(ids) > 0
        assert set(ids) == set(spec.instances())
        assert [r.id for r in spec.rooms] == list(range(len(spec.rooms)))


def test_walls_are_axis_aligned_and_never_doubled(houses):
    for spec in houses:
        for w in spec.walls:
            (ax, az), (bx, bz) = w.start, w.end
            assert ax == bx or az == bz
            assert math.dist(w.start, w.end) > 0.05
        for a, b in itertools.combinations(spec.walls, 2):
            if a.start[0] == a.end[0] == b.start[0] == b.end[0]:  # both along z, same x
                lo, hi = (
                    max(min(a.start[1], a.end[1]), min(b.start[1], b.end[1])),
                    min(max(a.start[1], a.end[1]), max(b.start[1], b.end[1])),
                )
                assert hi - lo < TOL, (spec.scene_id, a, b)
            if a.start[1] == a.end[1] == b.start[1] == b.end[1]:  # both along x, same z
                lo, hi = (
                    max(min(a.start[0], a.end[0]), min(b.start[0], b.end[0])),
                    min(max(a.start[0], a.end[0]), max(b.start[0], b.end[0])),
                )
                assert hi - lo < TOL, (spec.scene_id, a, b)


def test_doors_join_neighbours_away_from_corners(houses):
    for spec in houses:
        for d in spec.doors:
            assert 0.9 - TOL <= d.width <= 1.1 + TOL and d.height == pytest.approx(2.1)
            a, b = (spec.room(k).bounds for k in d.rooms)
            cx, cz = d.center
            # the door lies on the shared boundary, a margin away from its ends
            k_line, k_along = (1, 0) if d.axis == "x" else (0, 1)
            line = (cx, cz)[k_line]
            assert line in (a[k_line], a[k_line + 2]) and line in (b[k_line], b[k_line + 2])
            lo = max(a[k_along], b[k_along])
            hi = min(a[k_along + 2], b[k_along + 2])
            along = (cx, cz)[k_along]
            assert lo + DOOR_CORNER_MARGIN + d.width / 2 - TOL <= along
            assert along <= hi - DOOR_CORNER_MARGIN - d.width / 2 + TOL
            # no wall crosses the doorway
            for w in spec.walls:
                (ax, az), (bx, bz) = w.start, w.end
                if d.axis == "x" and az == bz == cz:
                    assert (
                        max(ax, bx) <= cx - d.width / 2 + TOL
                        or min(ax, bx) >= cx + d.width / 2 - TOL
                    )
                if d.axis == "z" and ax == bx == cx:
                    assert (
                        max(az, bz) <= cz - d.width / 2 + TOL
                        or min(az, bz) >= cz + d.width / 2 - TOL
                    )


def test_every_room_is_reachable_and_free_space_is_one_region(houses):
    for spec in houses:
        free, (x0, z0) = free_space_mask(spec, 0.05, 0.18)
        labels, n = ndimage.label(free, structure=np.ones((3, 3)))
        assert n == 1, f"{spec.scene_id}: {n} free regions"
        for r in spec.rooms:
            rx0, rz0, rx1, rz1 = r.bounds
            j0, j1 = int((rx0 - x0) / 0.05), int((rx1 - x0) / 0.05)
            i0, i1 = int((rz0 - z0) / 0.05), int((rz1 - z0) / 0.05)
            assert free[i0:i1, j0:j1].any(), f"{spec.scene_id}: room {r.id} ({r.type})"


# ------------------------------------------------------------------------ furniture
def test_objects_inside_their_room_without_overlaps(houses):
    for spec in houses:
        for o in spec.objects:
            ix0, iz0, ix1, iz1 = interior(spec, o.room)
            (x0, y0, z0), (x1, y1, z1) = o.bbox_min, o.bbox_max
            assert ix0 - TOL <= x0 and x1 <= ix1 + TOL and iz0 - TOL <= z0 and z1 <= iz1 + TOL
            assert y0 >= 0.0 and y1 <= spec.wall_height
            assert o.yaw in (0.0, 90.0, 180.0, 270.0)
        for a, b in itertools.combinations(spec.objects, 2):
            assert not all(
                a.bbox_min[k] < b.bbox_max[k] - TOL and b.bbox_min[k] < a.bbox_max[k] - TOL
                for k in range(3)
            ), (spec.scene_id, a.category, b.category)


def test_objects_stand_on_the_floor_on_a_support_or_on_a_wall(houses, vocab):
    for spec in houses:
        for o in spec.objects:
            ot = vocab.objects[o.category]
            if ot.placement == "on_top_of":
                support = [
                    s
                    for s in spec.objects
                    if s.category in ot.anchors
                    and s.bbox_max[1] == pytest.approx(o.bbox_min[1])
                    and s.bbox_min[0] - TOL <= o.bbox_min[0]
                    and o.bbox_max[0] <= s.bbox_max[0] + TOL
                    and s.bbox_min[2] - TOL <= o.bbox_min[2]
                    and o.bbox_max[2] <= s.bbox_max[2] + TOL
                ]
                assert support, (spec.scene_id, o.category)
            elif ot.elevation[1] > 0:
                assert o.bbox_min[1] >= BLOCKING_HEIGHT
            else:
                assert o.position[1] == 0.0
            if ot.placement in ("against_wall", "corner"):
                # the back is at a wall and the front faces into the room
                ix0, iz0, ix1, iz1 = interior(spec, o.room)
                r = math.radians(o.yaw)
                fx, fz = round(math.sin(r)), round(math.cos(r))
                back = {
                    (0, 1): o.bbox_min[2] - iz0,
                    (1, 0): o.bbox_min[0] - ix0,
                    (0, -1): iz1 - o.bbox_max[2],
                    (-1, 0): ix1 - o.bbox_max[0],
                }[(fx, fz)]
                assert back < 0.02, (spec.scene_id, o.category)


def test_doorway_clearance_is_respected(houses):
    for spec in houses:
        zones = [door_zone(spec, d) for d in spec.doors]
        for o in spec.objects:
            box = (o.bbox_min[0], o.bbox_min[2], o.bbox_max[0], o.bbox_max[2])
            for zone in zones:
                assert not overlaps_2d(box, zone), (spec.scene_id, o.category)


def test_rooms_are_furnished_by_type(houses):
    counts = {"bed": 0, "sofa": 0, "toilet": 0, "fridge": 0}
    for spec in houses:
        assert len(spec.objects) >= 2 * len(spec.rooms)
        for o in spec.objects:
            if o.category in counts:
                counts[o.category] += 1
                assert (
                    spec.room(o.room).type
                    in {
                        "bed": {"bedroom"},
                        "sofa": {"living room"},
                        "toilet": {"bathroom"},
                        "fridge": {"kitchen"},
                    }[o.category]
                )
    assert all(v > 0 for v in counts.values())


# ------------------------------------------------------------------ determinism, io
def test_same_seed_same_house_and_different_seed_different(houses):
    again = generate_house(house_seed(0, 3), "house_0003")
    assert again.to_json() == houses[3].to_json()
    other = generate_house(house_seed(0, 3) + 1, "house_0003")
    assert other.to_json() != houses[3].to_json()


def test_generate_houses_is_deterministic_and_independent_of_count(tmp_path: Path):
    a = generate_houses(3, 5, tmp_path / "a", progress=False)
    b = generate_houses(2, 5, tmp_path / "b", progress=False)
    assert [p.name for p in a] == ["house_0000.json", "house_0001.json", "house_0002.json"]
    for pa, pb in zip(a, b):
        assert pa.parent.name == pa.stem
        assert pa.read_bytes() == pb.read_bytes()
        assert pa.with_suffix(".glb").read_bytes() == pb.with_suffix(".glb").read_bytes()
    assert a[0].read_bytes() != a[1].read_bytes()
    assert sorted(p.name for p in a[0].parent.iterdir()) == ["house_0000.glb", "house_0000.json"]


def test_json_round_trip(houses, tmp_path: Path):
    spec = houses[0]
    spec.save(tmp_path / "h.json")
    loaded = SceneSpec.load(tmp_path / "h.json")
    assert loaded.to_json() == spec.to_json()
    assert loaded.instances() == SceneSpec.from_dict(spec.to_dict()).instances()


def test_glb_recovers_instance_ids_geometry_and_colours(houses, tmp_path: Path):
    spec = houses[1]
    path = export_glb(spec, tmp_path / "h.glb")
    assert export_glb(spec, tmp_path / "h2.glb").read_bytes() == path.read_bytes()
    built = dict(build_meshes(spec))
    loaded = load_glb(path)
    assert sorted(i for i, _ in loaded) == sorted(spec.instances())
    for iid, mesh in loaded:
        ref = built[iid]
        assert np.allclose(mesh.vertices[mesh.faces], ref.vertices[ref.faces], atol=1e-5)
        corner = np.asarray(mesh.visual.vertex_colors)[mesh.faces[:, 0]]
        assert np.array_equal(corner, ref.visual.face_colors)
    # y-up world coordinates: floors at y <= 0, everything inside the house's bounds
    x0, z0, x1, z1 = spec.bounds
    lo = np.min([m.bounds[0] for _, m in loaded], axis=0)
    hi = np.max([m.bounds[1] for _, m in loaded], axis=0)
    assert lo[1] == pytest.approx(-0.05) and hi[1] == pytest.approx(spec.wall_height + 0.05)
    assert lo[0] >= x0 - 0.03 and hi[0] <= x1 + 0.03 and lo[2] >= z0 - 0.03 and hi[2] <= z1 + 0.03


def test_meshes_use_room_colours(houses):
    spec = houses[2]
    built = dict(build_meshes(spec))
    for r in spec.rooms:
        c = room_colours(spec, r)
        assert c == room_colours(spec, r)  # deterministic
        assert tuple(built[r.floor_id].visual.face_colors[0, :3]) == c.floor_rgb
    for o in spec.objects:
        assert np.all(built[o.instance_id].visual.face_colors[:, :3] == o.rgb)


# --------------------------------------------------------------------------- config
def test_small_and_large_houses():
    for n in (1, 2, 16):
        cfg = GeneratorConfig(min_rooms=n, max_rooms=n)
        spec = generate_house(11, f"h{n}", cfg)
        assert len(spec.rooms) == n
        assert len(spec.doors) >= n - 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_rooms": 0}, "min_rooms=0 is out of range [1, 16]"),
        ({"min_rooms": 6, "max_rooms": 5}, "max_rooms=5 is out of range [6, 16]"),
        ({"wall_height": 1.0}, "wall_height=1.0 is out of range [2.2, 4]"),
        ({"door_width": (1.1, 0.9)}, "door_width=[1.1, 0.9] should be [min, max]"),
        ({"hallway_prob": 1.5}, "hallway_prob=1.5 is out of range [0, 1]"),
        ({"agent_radius": 0.45}, "agent_radius=0.45 is out of range [0.05, 0.35]"),
        ({"min_room_side": 1.0}, "min_room_side=1.0 is out of range [1.7, 5]"),
        ({"furniture_density": -1}, "furniture_density=-1 is out of range [0, 2]"),
    ],
)
def test_config_validation_names_field_and_range(kwargs, message):
    with pytest.raises(VlnavError) as err:
        GeneratorConfig(**kwargs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_config_from_yaml_dict_and_bad_seed():
    cfg = from_dict(GeneratorConfig, {"door_width": [0.8, 1.0], "max_rooms": 6}, "generator")
    assert cfg.door_width == (0.8, 1.0) and cfg.max_rooms == 6
    with pytest.raises(VlnavError, match="unknown config key 'generator.rooms'"):
        from_dict(GeneratorConfig, {"rooms": 3}, "generator")
    with pytest.raises(VlnavError, match="seed=-1"):
        generate_house(-1, "h")


def test_furniture_density_zero_keeps_only_required(vocab):
    spec = generate_house(4, "h", GeneratorConfig(furniture_density=0.0))
    for o in spec.objects:
        assert o.category in vocab.rooms[spec.room(o.room).type].required
