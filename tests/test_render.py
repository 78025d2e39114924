"""The builtin simulator's offscreen renderer: conventions, sensors, panoramas, misuse.

Scenes are a few boxes with known ids and colours; every test renders on Mesa's llvmpipe
through EGL (no GPU, no display) in well under a second.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import trimesh

from vlnav.sim import render as render_module
from vlnav.sim.render import EGL_INSTALL_HINT, Renderer, RendererError

EYE = (0.0, 1.5, 0.0)
W = H = 64
CENTRE = (H // 2, W // 2)


def box(centre, extents=(1.0, 1.0, 1.0), rgb=(255, 0, 0)) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents, trimesh.transformations.translation_matrix(centre))
    mesh.visual.face_colors = [*rgb, 255]
    return mesh


def make_renderer(meshes, width=W, height=H, **kwargs) -> Renderer:
    renderer = Renderer(width, height, **kwargs)
    renderer.set_geometry(*Renderer.geometry_from_meshes(meshes))
    return renderer


@pytest.fixture()
def red_box_ahead():
    """Red box, id 7, whose near face is the plane z = -2, straight ahead of EYE."""
    renderer = make_renderer([(7, box((0.0, 1.5, -2.5)))])
    yield renderer
    renderer.close()


def test_box_ahead_semantic_depth_and_colour(red_box_ahead):
    obs = red_box_ahead.render(EYE, yaw=0.0)
    assert obs["rgb"].shape == (H, W, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (H, W) and obs["depth"].dtype == np.float32
    assert obs["semantic"].shape == (H, W) and obs["semantic"].dtype == np.int32
    assert obs["semantic"][CENTRE] == 7
    assert obs["depth"][CENTRE] == pytest.approx(2.0, abs=0.01)
    r, g, b = (int(c) for c in obs["rgb"][CENTRE])
    assert r > 100 and g < 30 and b < 30


def test_depth_is_planar_not_radial(red_box_ahead):
    obs = red_box_ahead.render(EYE, yaw=0.0)
    # The face spans x in [-0.5, 0.5] at 2 m: +-8 pixels around the centre at hfov 90.
    # A pixel 6 columns off-centre is ~10 degrees off-axis: radial distance would be 2.02.
    row, col = CENTRE
    assert obs["semantic"][row, col + 6] == 7
    assert obs["depth"][row, col + 6] == pytest.approx(2.0, abs=2e-3)


def test_background_is_zero_in_depth_and_semantic(red_box_ahead):
    obs = red_box_ahead.render(EYE, yaw=0.0)
    assert obs["semantic"][0, 0] == 0 and obs["depth"][0, 0] == 0.0
    assert (obs["rgb"][0, 0] == 0).all()
    miss = obs["semantic"] == 0
    assert miss.sum() > H * W // 2
    assert (obs["depth"][miss] == 0).all() and (obs["depth"][~miss] > 0).all()
    behind = red_box_ahead.render(EYE, yaw=math.pi)  # turned around: nothing at all
    assert (behind["semantic"] == 0).all() and (behind["depth"] == 0).all()


def test_coloured_background_leaves_ids_and_depth_at_zero():
    renderer = make_renderer([(7, box((0.0, 1.5, -2.5)))], background=(10, 20, 30))
    obs = renderer.render(EYE, yaw=0.0)
    renderer.close()
    assert tuple(obs["rgb"][0, 0]) == (10, 20, 30)
    assert obs["semantic"][0, 0] == 0 and obs["depth"][0, 0] == 0.0
    assert obs["semantic"][CENTRE] == 7


def test_positive_yaw_turns_left_towards_minus_x():
    renderer = make_renderer([(3, box((-2.5, 1.5, 0.0)))])
    left = renderer.render(EYE, yaw=math.pi / 2)
    right = renderer.render(EYE, yaw=-math.pi / 2)
    renderer.close()
    assert left["semantic"][CENTRE] == 3
    assert left["depth"][CENTRE] == pytest.approx(2.0, abs=0.01)
    assert (right["semantic"] == 0).all()


def test_box_on_the_right_is_in_the_right_half_of_the_image():
    renderer = make_renderer(
        [(1, box((1.2, 1.5, -3.0), (0.5, 0.5, 0.5))), (2, box((-1.2, 1.5, -3.0), (0.5, 0.5, 0.5)))]
    )
    sem = renderer.render(EYE, yaw=0.0)["semantic"]
    renderer.close()
    right_cols = np.nonzero(sem == 1)[1]
    left_cols = np.nonzero(sem == 2)[1]
    assert len(right_cols) and len(left_cols)
    assert right_cols.min() > W // 2 and left_cols.max() < W // 2


def test_top_row_sees_above_the_horizon_and_pitch_looks_up():
    high = box((0.0, 4.5, -3.0))  # 45 degrees up
    renderer = make_renderer([(5, high)])
    level = renderer.render(EYE, yaw=0.0)["semantic"]
    up = renderer.render(EYE, yaw=0.0, pitch=math.pi / 4)["semantic"]
    renderer.close()
    rows = np.nonzero(level == 5)[0]
    assert len(rows) and rows.max() < H // 2 and rows.min() == 0
    assert up[CENTRE] == 5


def test_render_views_equals_separate_renders():
    rng = np.random.default_rng(0)
    meshes = [
        (i + 1, box((x, y, z), (0.6, 0.8, 0.6), tuple(int(c) for c in rng.integers(0, 256, 3))))
        for i, (x, y, z) in enumerate(rng.uniform((-4, 0, -4), (4, 3, 4), (30, 3)))
    ]
    meshes.append((99, box((0.0, -0.05, 0.0), (10.0, 0.1, 10.0), (120, 120, 120))))  # floor
    renderer = make_renderer(meshes)
    yaws = [i * math.pi / 6 for i in range(12)]
    eye = (0.3, 1.2, -0.4)
    pano = renderer.render_views(eye, yaws, pitch=0.1)
    assert pano["rgb"].shape == (12, H, W, 3)
    assert pano["depth"].shape == pano["semantic"].shape == (12, H, W)
    for i, yaw in enumerate(yaws):
        # Equal up to float rounding: each view sits at another row offset of one tall
        # framebuffer, which moves the interpolation origin (ids exact, colour +-1).
        single = renderer.render(eye, yaw, pitch=0.1)
        np.testing.assert_array_equal(pano["semantic"][i], single["semantic"], err_msg=str(i))
        np.testing.assert_allclose(pano["depth"][i], single["depth"], atol=1e-4, err_msg=str(i))
        diff = np.abs(pano["rgb"][i].astype(int) - single["rgb"])
        assert diff.max() <= 1 and (diff > 0).mean() < 0.05, i
    first = renderer.render(eye, yaws[0], pitch=0.1)
    for name in ("rgb", "depth", "semantic"):  # the first view is bit for bit the same
        np.testing.assert_array_equal(pano[name][0], first[name])
    assert len(np.unique(pano["semantic"])) > 10
    only_depth = renderer.render_views(eye, yaws[:3], pitch=0.1, sensors=("depth",))
    renderer.close()
    assert set(only_depth) == {"depth"}
    np.testing.assert_array_equal(only_depth["depth"], pano["depth"][:3])


def test_frustum_culling_changes_nothing():
    rng = np.random.default_rng(1)
    meshes = []
    for i, centre in enumerate(rng.uniform((-6, 0, -6), (6, 3, 6), (40, 3))):
        sphere = trimesh.creation.icosphere(subdivisions=1, radius=0.3)
        sphere.apply_translation(centre)
        sphere.visual.face_colors = [200, 100, 50, 255]
        meshes.append((i + 1, sphere))
    geometry = Renderer.geometry_from_meshes(meshes)
    fine, coarse = Renderer(W, H), Renderer(W, H)
    fine.chunk_triangles, coarse.chunk_triangles = 4, 10**6
    fine.set_geometry(*geometry)
    coarse.set_geometry(*geometry)
    yaws = [i * math.pi / 4 for i in range(8)]
    a = fine.render_views((0.1, 1.4, 0.2), yaws)
    b = coarse.render_views((0.1, 1.4, 0.2), yaws)
    fine.close()
    coarse.close()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_one_draw_per_chunk_fallback_matches_multi_draw():
    # Without GL 4.3 (glMultiDrawArraysIndirect) the chunks are drawn one call each.
    meshes = [(i + 1, box((i - 2.0, 1.0, -3.0 - i), (0.5, 0.5, 0.5))) for i in range(5)]
    multi, single = make_renderer(meshes), make_renderer(meshes)
    single._use_indirect = False
    yaws = [0.0, 0.5, -0.5]
    a, b = multi.render_views(EYE, yaws), single.render_views(EYE, yaws)
    multi.close()
    single.close()
    assert len(np.unique(a["semantic"])) == 6
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_benchmark_renderer_reports_rates():
    figures = render_module.benchmark_renderer(sizes=(32,), seconds=0.01)
    assert figures["triangles"] > 15_000
    for kind in ("single", "pano12"):
        for sensors in ("rgb", "all"):
            assert figures[f"32/{kind}/{sensors}"] > 0


def test_resolution_and_hfov_set_shape_and_apparent_size():
    mesh = box((0.0, 1.5, -4.5), (1.0, 1.0, 1.0))
    wide = make_renderer([(1, mesh)], width=96, height=64, hfov=90.0)
    narrow = make_renderer([(1, mesh)], width=96, height=64, hfov=60.0)
    a, b = wide.render(EYE, 0.0), narrow.render(EYE, 0.0)
    wide.close()
    narrow.close()
    assert a["rgb"].shape == (64, 96, 3) and a["depth"].shape == (64, 96)
    width_90 = np.count_nonzero((a["semantic"] == 1).any(axis=0))
    width_60 = np.count_nonzero((b["semantic"] == 1).any(axis=0))
    # Apparent size scales with 1 / tan(hfov / 2): tan(45) / tan(30) = 1.73.
    assert width_60 / width_90 == pytest.approx(math.sqrt(3), rel=0.12)
    # Square pixels: the 1 m cube is as tall as it is wide.
    height_90 = np.count_nonzero((a["semantic"] == 1).any(axis=1))
    assert abs(height_90 - width_90) <= 1


def test_rgb_only_and_sensor_validation(red_box_ahead):
    obs = red_box_ahead.render(EYE, 0.0, sensors=("rgb",))
    assert set(obs) == {"rgb"}
    full = red_box_ahead.render(EYE, 0.0)
    np.testing.assert_array_equal(obs["rgb"], full["rgb"])
    with pytest.raises(ValueError, match="sensors"):
        red_box_ahead.render(EYE, 0.0, sensors=("lidar",))


def test_inside_a_closed_box_sees_its_walls():
    # A closed room shell around the camera: back-face culling must not hide it.
    renderer = make_renderer([(4, box((0.0, 1.5, 0.0), (4.0, 3.0, 4.0), (0, 200, 0)))])
    obs = renderer.render(EYE, yaw=0.3)
    renderer.close()
    assert (obs["semantic"] == 4).all()
    assert (obs["depth"] > 1.0).all() and obs["rgb"][..., 1].min() > 50


def test_inward_wound_and_open_meshes_are_visible():
    inverted = box((0.0, 1.5, -2.5))
    inverted.invert()  # closed but wound inwards
    quad = trimesh.Trimesh(  # open, a single square facing +z at z = -2, right of the box
        vertices=[[1, 1, -2], [2, 1, -2], [2, 2, -2], [1, 2, -2]], faces=[[0, 1, 2], [0, 2, 3]]
    )
    quad.visual.face_colors = [0, 0, 255, 255]
    renderer = make_renderer([(1, inverted), (2, quad)])
    front = renderer.render(EYE, 0.0)
    back = renderer.render((1.5, 1.5, -4.0), math.pi)  # behind the quad, looking at +z
    renderer.close()
    assert front["semantic"][CENTRE] == 1
    assert front["depth"][CENTRE] == pytest.approx(2.0, abs=0.01)
    assert (front["semantic"] == 2).any()
    assert back["semantic"][CENTRE] == 2 and back["rgb"][CENTRE][2] > 50


def test_two_renderers_in_one_thread_do_not_mix():
    a = make_renderer([(1, box((0.0, 1.5, -2.5)))])
    b = make_renderer([(2, box((0.0, 1.5, -3.5)))], width=32, height=32)
    for _ in range(2):
        assert a.render(EYE, 0.0)["semantic"][CENTRE] == 1
        obs = b.render(EYE, 0.0)
        assert obs["semantic"][16, 16] == 2
        assert obs["depth"][16, 16] == pytest.approx(3.0, abs=0.01)
    a.close()
    b.close()


def test_use_from_another_thread_raises(red_box_ahead):
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            red_box_ahead.render(EYE, 0.0)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert "create one Renderer per thread/process" in str(errors[0])
    assert red_box_ahead.render(EYE, 0.0)["semantic"][CENTRE] == 7  # still fine here


def test_closed_renderer_refuses_to_render():
    renderer = make_renderer([(1, box((0.0, 1.5, -2.5)))])
    renderer.close()
    renderer.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        renderer.render(EYE, 0.0)


def test_empty_scene_renders_background():
    renderer = Renderer(W, H)
    obs = renderer.render(EYE, 0.0)
    renderer.set_geometry(*Renderer.geometry_from_meshes([]))
    again = renderer.render(EYE, 0.0)
    renderer.close()
    for o in (obs, again):
        assert (o["semantic"] == 0).all() and (o["depth"] == 0).all() and (o["rgb"] == 0).all()


def test_geometry_from_meshes_face_and_vertex_colours():
    faces = box((0, 0, 0), rgb=(255, 0, 0))
    verts = trimesh.creation.icosphere(subdivisions=0)
    verts.visual.vertex_colors = np.tile([0, 255, 0, 255], (len(verts.vertices), 1))
    positions, colors, ids, normals = Renderer.geometry_from_meshes([(3, faces), (9, verts)])
    n = 3 * (len(faces.faces) + len(verts.faces))
    assert positions.shape == colors.shape == normals.shape == (n, 3)
    assert ids.shape == (n,) and ids.dtype == np.int32
    assert (ids[: 3 * len(faces.faces)] == 3).all() and (ids[3 * len(faces.faces) :] == 9).all()
    np.testing.assert_allclose(colors[0], (1.0, 0.0, 0.0))
    np.testing.assert_allclose(colors[-1], (0.0, 1.0, 0.0))
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, rtol=1e-5)


def test_set_geometry_validates_its_arrays(red_box_ahead):
    positions = np.zeros((6, 3), np.float32)
    with pytest.raises(ValueError, match="positions"):
        red_box_ahead.set_geometry(positions[:4], np.zeros((4, 3)), np.ones(4, np.int32))
    with pytest.raises(ValueError, match="instance_ids"):
        red_box_ahead.set_geometry(positions, np.zeros((6, 3)), np.zeros(6, np.int32))


def test_missing_egl_says_how_to_install(monkeypatch):
    import moderngl

    def no_egl(**kwargs):
        raise Exception("libEGL.so: cannot open shared object file\nmore detail")

    monkeypatch.setattr(moderngl, "create_standalone_context", no_egl)
    with pytest.raises(RendererError) as info:
        render_module.Renderer(W, H)
    message = str(info.value)
    assert EGL_INSTALL_HINT in message and "\n" not in message
    assert EGL_INSTALL_HINT == "apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri"
