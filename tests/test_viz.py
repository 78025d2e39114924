"""Tests of vlnav.viz: map orientation and colours, the agent's arrow, video and PNG files."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest

from vlnav import VlnavError
from vlnav.episodes import Episode
from vlnav.scenes.spec import Door, Room, SceneObject, SceneSpec, Wall
from vlnav.sim.base import AgentState
from vlnav.sim.builtin import quaternion_to_yaw, yaw_to_quaternion
from vlnav.sim.navgrid import NavGrid
from vlnav.viz import (
    AGENT_COLOUR,
    REFERENCE_COLOUR,
    TopDownMap,
    bar_chart_svg,
    candidate_panel,
    episode_frames,
    line_chart_svg,
    save_map_png,
    write_video,
    write_videos,
)

SOFA_RGB = [200, 30, 30]
TABLE_RGB = [30, 60, 200]


def make_spec(scene_id: str = "viz_house") -> SceneSpec:
    """Two rooms side by side (living room x 0..5, kitchen x 5..9, z 0..4), one door.

    The shared wall at x = 5 has a 1 m doorway centred at z = 2.
    """

    def wall(iid: int, a: list[float], b: list[float]) -> Wall:
        return Wall(instance_id=iid, start=a, end=b, thickness=0.1, height=2.6)

    rooms = [
        Room(0, "living_room", [[0, 0], [5, 0], [5, 4], [0, 4]], floor_id=1, ceiling_id=2),
        Room(1, "kitchen", [[5, 0], [9, 0], [9, 4], [5, 4]], floor_id=3, ceiling_id=4),
    ]
    walls = [
        wall(10, [0, 0], [9, 0]),
        wall(11, [0, 4], [9, 4]),
        wall(12, [0, 0], [0, 4]),
        wall(13, [9, 0], [9, 4]),
        wall(14, [5, 0], [5, 1.5]),
        wall(15, [5, 2.5], [5, 4]),
    ]
    doors = [
        Door(id=0, instance_id=20, rooms=[0, 1], center=[5, 2], width=1.0, height=2.1, axis="z")
    ]
    objects = [
        SceneObject(30, "sofa", "red", SOFA_RGB, 0, [1.5, 0, 3.2], 0.0, [2.0, 0.8, 0.9]),
        SceneObject(31, "table", "blue", TABLE_RGB, 1, [7.5, 0, 1.0], 0.0, [1.2, 0.75, 0.8]),
        SceneObject(32, "lamp", "yellow", [230, 200, 40], 1, [7.5, 0.75, 1.0], 0.0, [0.3] * 3),
    ]
    return SceneSpec(scene_id, 0, rooms, walls, doors, objects)


@pytest.fixture(scope="module")
def spec() -> SceneSpec:
    return make_spec()


@pytest.fixture(scope="module")
def grid(spec: SceneSpec) -> NavGrid:
    return NavGrid.from_spec(spec, cell=0.1)


@pytest.fixture(scope="module")
def topdown(spec: SceneSpec, grid: NavGrid) -> TopDownMap:
    return TopDownMap(spec, grid, px_per_m=40)


def test_map_size_and_type(topdown: TopDownMap) -> None:
    img = topdown.image()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[:2] == (topdown.height, topdown.width)
    # 9.1 m x 4.1 m (walls included) at 40 px/m plus a margin on each side
    assert topdown.width == math.ceil(9.1 * 40) + 2 * topdown.margin
    assert topdown.height == math.ceil(4.1 * 40) + 2 * topdown.margin
    img[:] = 0  # image() hands out copies
    assert topdown.image().any()


def test_to_px_orientation(topdown: TopDownMap) -> None:
    u0, v0 = topdown.to_px(2.0, 2.0)
    u1, v1 = topdown.to_px(3.0, 2.0)
    u2, v2 = topdown.to_px(2.0, 1.0)
    assert u1 - u0 == 40 and v1 == v0  # larger x is further right
    assert v0 - v2 == 40 and u2 == u0  # smaller z is higher in the image
    assert 0 <= u0 < topdown.width and 0 <= v0 < topdown.height


def test_objects_carry_their_rgb(spec: SceneSpec, topdown: TopDownMap) -> None:
    img = topdown.image()
    u, v = topdown.to_px(1.5, 3.2)  # the sofa's centre
    assert img[v, u].tolist() == SOFA_RGB
    u, v = topdown.to_px(7.1, 0.8)  # on the table, beside the lamp standing on it
    assert img[v, u].tolist() == TABLE_RGB
    u, v = topdown.to_px(7.5, 1.0)  # the lamp is drawn over the table
    assert img[v, u].tolist() == [230, 200, 40]


def test_walls_dark_and_doorway_open(topdown: TopDownMap) -> None:
    img = topdown.image().astype(int)
    wall = img[topdown.to_px(5.0, 0.8)[::-1]]
    door = img[topdown.to_px(5.0, 2.0)[::-1]]
    assert wall.sum() < 3 * 80
    assert door.sum() > 3 * 150  # the gap is not painted as wall


def test_navigable_area_is_tinted(spec: SceneSpec, grid: NavGrid) -> None:
    plain = TopDownMap(spec, None).image()
    tinted = TopDownMap(spec, grid).image()
    u, v = TopDownMap(spec, None).to_px(3.0, 1.0)  # open floor of the living room
    assert grid.is_navigable([3.0, 0.0, 1.0])
    assert plain[v, u].tolist() != tinted[v, u].tolist()
    u, v = TopDownMap(spec, None).to_px(1.5, 3.2)  # objects are not tinted
    assert plain[v, u].tolist() == tinted[v, u].tolist()


@pytest.mark.parametrize(
    ("heading", "forward"),
    [(0.0, (0, -1)), (math.pi / 2, (-1, 0)), (math.pi, (0, 1)), (-math.pi / 2, (1, 0))],
)
def test_agent_arrow_direction(topdown: TopDownMap, heading: float, forward: tuple) -> None:
    img = np.full((topdown.height, topdown.width, 3), 255, dtype=np.uint8)
    topdown.draw_agent(img, [3.0, 0.0, 2.0], heading, radius_m=0.2, arrow_m=0.8)
    cu, cv = topdown.to_px(3.0, 2.0)
    reach = int(0.8 * 40 * 0.85)  # just inside the arrow's tip
    du, dv = forward
    assert img[cv + dv * reach, cu + du * reach].tolist() == list(AGENT_COLOUR)
    assert img[cv - dv * reach, cu - du * reach].tolist() == [255, 255, 255]


def test_draw_path_and_goal(topdown: TopDownMap) -> None:
    img = topdown.image()
    topdown.draw_path(img, [[1.0, 0.0, 1.0], [4.0, 0.0, 1.0]], REFERENCE_COLOUR, 3)
    u, v = topdown.to_px(2.5, 1.0)
    assert img[v, u].tolist() == list(REFERENCE_COLOUR)
    before = img.copy()
    topdown.draw_goal(img, [7.0, 0.0, 3.0], radius_m=1.0)
    u, v = topdown.to_px(7.0, 3.0)
    assert img[v, u, 0] > 150 and img[v, u, 1] < 100  # the red marker
    ring = topdown.to_px(8.0, 3.0)  # on the success circle
    assert img[ring[1], ring[0]].tolist() != before[ring[1], ring[0]].tolist()


def _frames(n: int, h: int = 45, w: int = 63) -> list[np.ndarray]:
    """Frames with odd sizes and distinct content (a moving bar)."""
    out = []
    for k in range(n):
        f = np.full((h, w, 3), 30, dtype=np.uint8)
        f[:, (k * 7) % w : (k * 7) % w + 6] = (250, 200, 20)
        out.append(f)
    return out


def test_write_mp4(tmp_path: Path) -> None:
    path = write_video(iter(_frames(10)), tmp_path / "sub" / "ep.mp4", fps=8)
    assert path.is_file() and path.stat().st_size > 0
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert tuple(meta["size"]) == (64, 46)  # padded to even sizes
    reader.close()
    frames = list(iio.imiter(path, plugin="FFMPEG"))
    assert len(frames) == 10
    assert frames[0].shape == (46, 64, 3)
    assert abs(int(frames[3][20, 22, 0]) - 250) < 40  # the bar is where it was drawn


def test_write_webm_and_mp4_from_one_stream(tmp_path: Path) -> None:
    """The report's two <video> sources: VP9 WebM (every Chromium build) and H.264 MP4."""
    consumed = []

    def gen():
        for f in _frames(7):
            consumed.append(1)
            yield f

    paths = write_videos(gen(), [tmp_path / "v" / "ep.webm", tmp_path / "v" / "ep.mp4"], fps=8)
    assert len(consumed) == 7  # one pass over the frames feeds both encoders
    for path, codec in zip(paths, ("vp9", "h264")):
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        reader.close()
        assert meta["codec"] == codec and tuple(meta["size"]) == (64, 46)
        frames = list(iio.imiter(path, plugin="FFMPEG"))
        assert len(frames) == 7 and abs(int(frames[3][20, 22, 0]) - 250) < 40


def test_candidate_panel_highlights_the_chosen_line() -> None:
    lines = [
        (f"{k * 30} degree left: A kitchen with a white fridge ahead.", k == 2) for k in range(5)
    ]
    panel = candidate_panel("candidates at step 3:", [*lines, ("Stop", False)], 300, 120)
    assert panel.shape == (120, 300, 3) and panel.dtype == np.uint8
    highlight = np.all(panel == (255, 236, 160), axis=2)
    rows = np.flatnonzero(highlight.any(axis=1))
    assert rows.size and rows.min() > 20 and rows.max() < 100  # one entry, under the title
    long = [("front: " + "a very long caption " * 20, False)] * 12
    assert candidate_panel("c", long, 200, 80).shape == (80, 200, 3)  # cut to fit, no error


def test_charts_are_svg_files(tmp_path: Path) -> None:
    bars = bar_chart_svg(
        {"random": {"SR": 0.1, "SPL": 0.05}, "oracle": {"SR": 1.0, "SPL": 0.99}},
        ["SR", "SPL"],
        tmp_path / "p" / "bars.svg",
        title="SR <by> agent",
    )
    text = bars.read_text()
    assert text.startswith("<svg") and 'width="640"' in text and "&lt;by&gt;" in text
    assert text.count("<rect") == 1 + 4 + 2  # background, 4 bars, 2 legend swatches
    line = line_chart_svg({"oracle": ([0, 1, 2], [0, 0.5, 1])}, tmp_path / "l.svg", marker_x=1)
    assert "<polyline" in line.read_text() and "stroke-dasharray" in line.read_text()


def test_write_gif(tmp_path: Path) -> None:
    path = write_video(_frames(6), tmp_path / "ep.gif", fps=5)
    frames = iio.imread(path, index=None)
    assert frames.shape[:3] == (6, 45, 63)


def test_write_video_errors(tmp_path: Path) -> None:
    with pytest.raises(VlnavError, match="suffix"):
        write_video(_frames(2), tmp_path / "ep.avi")
    with pytest.raises(VlnavError, match="no frames"):
        write_videos([], [tmp_path / "e.webm", tmp_path / "e.mp4"])
    assert not (tmp_path / "e.webm").exists() and not (tmp_path / "e.mp4").exists()
    with pytest.raises(VlnavError, match="no frames"):
        write_video([], tmp_path / "empty.mp4")
    assert not (tmp_path / "empty.mp4").exists()
    with pytest.raises(VlnavError, match="frame 1"):
        write_video(
            [np.zeros((8, 8, 3), np.uint8), np.zeros((10, 8, 3), np.uint8)], tmp_path / "x.gif"
        )


def test_save_map_png(tmp_path: Path, spec: SceneSpec, grid: NavGrid) -> None:
    ref = [[1.0, 0.0, 1.0], [5.0, 0.0, 2.0], [7.0, 0.0, 3.0]]
    path = save_map_png(spec, grid, tmp_path / "maps" / "house.png", paths=[ref], goal=ref[-1])
    img = iio.imread(path)
    m = TopDownMap(spec, grid)
    assert img.shape == (m.height, m.width, 3)
    u, v = m.to_px(3.0, 1.5)  # the middle of the first segment
    assert img[v, u].tolist() == list(REFERENCE_COLOUR)


# ---------------------------------------------------------------- episode replay
class ScriptedSim:
    """A minimal simulator on the NavGrid: real motion, a flat rgb frame per heading."""

    def __init__(self, spec: SceneSpec, grid: NavGrid, size: int = 32) -> None:
        self.spec, self.grid, self.size = spec, grid, size
        self.position, self.heading, self.collided = [0.0, 0.0, 0.0], 0.0, False

    def reset(self, scene: str, position: list[float], rotation: list[float]) -> dict:
        self.position, self.heading = list(position), quaternion_to_yaw(rotation)
        return self.observe()

    def step(self, action: int) -> dict:
        self.collided = False
        if action == 1:
            self.position, self.collided = self.grid.move(self.position, self.heading, 0.25)
        elif action in (2, 3):
            self.heading += math.radians(15 if action == 2 else -15)
        return self.observe()

    def observe(self) -> dict:
        shade = int(100 + 50 * math.cos(self.heading))
        return {"rgb": np.full((self.size, self.size, 3), (shade, 80, 40), dtype=np.uint8)}

    def agent_state(self) -> AgentState:
        return AgentState(
            list(self.position), yaw_to_quaternion(self.heading), self.heading, self.collided
        )

    def geodesic_distance(self, a: list[float], b: list[float]) -> float:
        return self.grid.geodesic_distance(a, b)


def make_episode(spec: SceneSpec, grid: NavGrid) -> Episode:
    start, goal = [1.0, 0.0, 2.0], [7.0, 0.0, 3.0]
    ref = grid.shortest_path(start, goal)
    return Episode(
        episode_id=1,
        trajectory_id=1,
        scene_id=spec.scene_id,
        start_position=start,
        start_rotation=yaw_to_quaternion(-math.pi / 2),  # facing +x, towards the kitchen
        goals=[{"position": goal, "radius": 3.0}],
        reference_path=ref,
        instruction_text="Walk out of the living room through the doorway on your right "
        "and stop beside the blue table in the kitchen.",
        info={"geodesic_distance": grid.geodesic_distance(start, goal)},
    )


def test_episode_frames_replay(spec: SceneSpec, grid: NavGrid) -> None:
    sim = ScriptedSim(spec, grid)
    episode = make_episode(spec, grid)
    actions = [1, 1, 1, 2, 1, 3, 1]
    frames = list(episode_frames(sim, episode, actions, size=96))
    assert len(frames) == len(actions) + 1
    h, w = frames[0].shape[:2]
    assert all(f.shape == (h, w, 3) and f.dtype == np.uint8 for f in frames)
    assert h > 96 and w > 2 * 96  # image row (ego + wider map) over a caption strip
    assert frames[0][48, 48].tolist() == [100, 80, 40]  # ego view at heading -pi/2
    assert frames[4][48, 48].tolist() != frames[3][48, 48].tolist()  # it turned
    assert sim.position[0] > 1.9  # the replay really moved the agent (6 x 0.25 m forward)
    again = list(episode_frames(ScriptedSim(spec, grid), episode, actions, size=96))
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))  # deterministic


def test_episode_frames_stop_ends_replay(spec: SceneSpec, grid: NavGrid) -> None:
    episode = make_episode(spec, grid)
    frames = list(episode_frames(ScriptedSim(spec, grid), episode, [1, 0, 1, 1], size=64))
    assert len(frames) == 3  # start, MOVE_FORWARD, STOP


def test_episode_frames_candidate_panel(spec: SceneSpec, grid: NavGrid) -> None:
    """The panel right of the map shows what the callable returned; None keeps the last."""
    episode = make_episode(spec, grid)
    calls = []

    def lines(t, sim):
        calls.append((t, list(sim.position)))
        return [(f"front: decision at {t}", True), ("Stop", False)] if t in (0, 2) else None

    plain = list(episode_frames(ScriptedSim(spec, grid), episode, [1, 1, 1, 1], size=64))
    frames = list(
        episode_frames(
            ScriptedSim(spec, grid),
            episode,
            [1, 1, 1, 1],
            size=64,
            candidates=lines,
            panel_width=150,
        )
    )
    assert [t for t, _ in calls] == [0, 1, 2, 3, 4]  # called at every frame, at its pose
    assert calls[1][1] != calls[0][1]
    assert frames[0].shape[1] == plain[0].shape[1] + 150
    w = plain[0].shape[1]
    panel = [f[:64, w:] for f in frames]
    assert np.array_equal(panel[0], panel[1]) and not np.array_equal(panel[1], panel[2])
    assert np.all(panel[2] == (255, 236, 160), axis=2).any()  # the chosen line is highlighted


@pytest.mark.skipif(
    importlib.util.find_spec("vlnav.scenes.mesh") is None,
    reason="BuiltinSimulator renders through vlnav.scenes.mesh, which is not written yet",
)
def test_episode_frames_builtin_simulator(tmp_path: Path, spec: SceneSpec) -> None:
    from vlnav.config import EnvConfig, SensorConfig
    from vlnav.sim.builtin import BuiltinSimulator

    (tmp_path / spec.scene_id).mkdir()
    spec.save(tmp_path / spec.scene_id / f"{spec.scene_id}.json")
    config = EnvConfig(sensor=SensorConfig(width=64, height=64, sensors=["rgb"]))
    sim = BuiltinSimulator(config, scenes_dir=tmp_path)
    try:
        episode = make_episode(spec, NavGrid.from_spec(spec))
        frames = list(episode_frames(sim, episode, [1, 1, 2, 1], size=64))
    finally:
        sim.close()
    assert len(frames) == 5
    assert all(f.shape == frames[0].shape and f.shape[0] > 64 for f in frames)
    assert frames[0][:64, :64].std() > 0  # a rendered view, not a blank panel
    path = write_video(frames, tmp_path / "ep.mp4", fps=4)
    assert len(list(iio.imiter(path, plugin="FFMPEG"))) == 5
