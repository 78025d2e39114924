"""Every simulator backend behaves the same on the same house: the Simulator protocol's
contract, checked on ``builtin`` always and on ``habitat`` wherever ``import habitat_sim``
works (conda on Linux; skipped elsewhere with the reason).

One small generated house (3 rooms), small non-square sensors, a few episodes sampled on the
builtin navigation grid: the reference every backend is compared with.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from vlnav.agents import OracleAgent
from vlnav.config import EnvConfig, SensorConfig
from vlnav.episodes import quaternion_to_yaw, yaw_to_quaternion
from vlnav.evaluate import run_episode
from vlnav.metrics import compute_metrics
from vlnav.sampler import sample_episodes
from vlnav.scenes.generator import GeneratorConfig, generate_houses
from vlnav.scenes.spec import SceneSpec
from vlnav.sim.base import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT, Simulator, make_simulator
from vlnav.sim.navgrid import NavGrid

HEIGHT, WIDTH = 30, 40  # non-square: a height/width swap changes the shapes
FORWARD, TURN = 0.25, math.radians(15.0)
BACKENDS = ("builtin", "habitat")


@pytest.fixture(scope="module")
def house(tmp_path_factory):
    """(data_dir, spec, grid, episodes) of one 3-room house."""
    data_dir = tmp_path_factory.mktemp("conformance")
    gen = GeneratorConfig(min_rooms=3, max_rooms=3, furniture_density=0.5)
    (path,) = generate_houses(1, 0, data_dir / "scenes", gen, progress=False)
    spec = SceneSpec.load(path)
    grid = NavGrid.from_spec(spec)
    episodes = sample_episodes(
        spec, grid, 3, np.random.default_rng(0), min_geodesic=3.0, max_geodesic=12.0
    )
    assert len(episodes) == 3
    return data_dir, spec, grid, episodes


@pytest.fixture(scope="module", params=BACKENDS)
def sim(request, house):
    if request.param == "habitat":
        pytest.importorskip(
            "habitat_sim", reason="habitat-sim is not installed (conda only on Linux)"
        )
    data_dir = house[0]
    cfg = EnvConfig(
        backend=request.param,
        data_dir=str(data_dir),
        sensor=SensorConfig(width=WIDTH, height=HEIGHT),
    )
    s = make_simulator(request.param, cfg)
    yield s
    s.close()


def open_floor_start(grid: NavGrid) -> list[float]:
    """The free point farthest from any obstacle (room to walk 1 m without touching one)."""
    clearance = ndimage.distance_transform_edt(grid.free) * grid.cell
    i, j = np.unravel_index(int(np.argmax(clearance)), clearance.shape)
    assert clearance[i, j] > 1.3, "the test house has no open floor"
    return grid.to_world(i, j)


def test_is_a_simulator(sim):
    assert isinstance(sim, Simulator)


def test_observations_have_vlnav_shapes_and_dtypes(sim, house):
    ep = house[3][0]
    obs = sim.reset(ep.scene_id, ep.start_position, ep.start_rotation)
    assert obs["rgb"].shape == (HEIGHT, WIDTH, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (HEIGHT, WIDTH) and obs["depth"].dtype == np.float32
    assert obs["semantic"].shape == (HEIGHT, WIDTH) and obs["semantic"].dtype == np.int32
    assert obs["rgb"].mean() > 30  # lit, not black
    assert np.isfinite(obs["depth"]).all() and 0.0 < obs["depth"][HEIGHT // 2, WIDTH // 2] < 15
    ids = set(np.unique(obs["semantic"]).tolist()) - {0}
    assert ids and ids <= set(sim.objects())  # pixels carry vlnav instance ids
    assert set(sim.step(MOVE_FORWARD)) >= {"rgb", "depth", "semantic"}


def expected_poses(start, heading, actions):
    """Poses the VLN-CE action space promises away from obstacles."""
    x, _, z = start
    out = []
    for a in actions:
        if a == MOVE_FORWARD:
            x, z = x - FORWARD * math.sin(heading), z - FORWARD * math.cos(heading)
        elif a == TURN_LEFT:
            heading += TURN
        elif a == TURN_RIGHT:
            heading -= TURN
        out.append((x, z, math.remainder(heading, 2 * math.pi)))
    return out


def test_same_actions_from_the_same_start_give_the_same_poses(sim, house):
    _, spec, grid, _ = house
    start, heading = open_floor_start(grid), 0.3
    actions = [MOVE_FORWARD, TURN_LEFT, TURN_LEFT, TURN_LEFT, MOVE_FORWARD]
    actions += [TURN_RIGHT] * 6 + [MOVE_FORWARD, MOVE_FORWARD, STOP]
    runs = []
    for _ in range(2):
        sim.reset(spec.scene_id, start, yaw_to_quaternion(heading))
        poses = []
        for a in actions:
            sim.step(a)
            st = sim.agent_state()
            assert not st.collided
            assert st.heading == pytest.approx(quaternion_to_yaw(st.rotation), abs=1e-5)
            poses.append((st.position[0], st.position[2], st.heading, st.position[1]))
        runs.append(poses)
    assert np.allclose(runs[0], runs[1], atol=1e-5)  # deterministic
    for (x, z, h, y), (ex, ez, eh) in zip(runs[0], expected_poses(start, heading, actions)):
        assert math.dist((x, z), (ex, ez)) < 0.02
        assert abs(math.remainder(h - eh, 2 * math.pi)) < 1e-4
        assert abs(y) < 0.1  # on the floor


def test_geodesic_distances_agree_with_the_builtin_grid(sim, house):
    _, spec, grid, episodes = house
    sim.reset(spec.scene_id, episodes[0].start_position, episodes[0].start_rotation)
    rng = np.random.default_rng(1)
    pairs = [(e.start_position, e.goal_position) for e in episodes]
    ii, jj = grid.free_cells()
    clearance = ndimage.distance_transform_edt(grid.free)[ii, jj] * grid.cell
    roomy = np.nonzero(clearance > 0.3)[0]  # away from edges where navmeshes round differently
    for _ in range(4):
        a, b = rng.choice(roomy, 2, replace=False)
        pairs.append((grid.to_world(ii[a], jj[a]), grid.to_world(ii[b], jj[b])))
    for a, b in pairs:
        ref = grid.geodesic_distance(a, b)
        d = sim.geodesic_distance(a, b)
        assert math.isfinite(d) and d >= math.dist(a, b) - 0.05
        assert d == pytest.approx(ref, rel=0.05, abs=0.1), (a, b)
        path = sim.shortest_path(a, b)
        assert math.dist(path[0][::2], a[::2]) < 0.1 and math.dist(path[-1][::2], b[::2]) < 0.1
        length = sum(math.dist(p, q) for p, q in zip(path[:-1], path[1:]))
        assert length == pytest.approx(d, rel=0.01, abs=0.02)
        assert sim.is_navigable(a) and sim.is_navigable(b)
    x0, z0, _, _ = spec.bounds
    assert not sim.is_navigable([x0 - 3.0, 0.0, z0 - 3.0])  # outside the house


def test_the_oracle_reaches_the_goal(sim, house):
    for i, ep in enumerate(house[3][:2]):
        rec = run_episode(sim, ep, OracleAgent(), max_steps=300, seed=i)
        assert rec.stopped and rec.actions[-1] == STOP
        assert rec.distance_to_goal[-1] < 0.5
        assert compute_metrics(rec)["SR"] == 1.0
