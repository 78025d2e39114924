import math

import numpy as np
import pytest

from vlnav.episodes import yaw_to_quaternion
from vlnav.sim.base import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT, Simulator, make_simulator
from vlnav.sim.builtin import BuiltinSimulator, UnknownSceneError


@pytest.fixture
def sim(tiny_env):
    s = BuiltinSimulator(tiny_env)
    yield s
    s.close()


def test_is_a_simulator_with_habitat_shaped_observations(sim):
    assert isinstance(sim, Simulator)
    obs = sim.reset("tiny_0000/tiny_0000.glb", [2.0, 0.0, 2.0], yaw_to_quaternion(0.0))
    assert obs["rgb"].shape == (64, 64, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (64, 64) and obs["depth"].dtype == np.float32
    assert obs["semantic"].shape == (64, 64) and obs["semantic"].dtype == np.int32
    # facing -z from z = 2 the north wall (z = 0, inner face at 0.05) is ~1.95 m ahead
    assert obs["depth"][32, 32] == pytest.approx(1.95, abs=0.05)
    assert sim.objects()[int(obs["semantic"][32, 32])]["category"] == "wall"


def test_turning_left_faces_minus_x_with_the_sofa_on_the_left(sim):
    sim.reset("tiny_0000", [2.0, 0.0, 2.0], yaw_to_quaternion(0.0))
    for _ in range(6):  # 6 x 15 degrees = 90 degrees to the left: now facing -x
        sim.step(TURN_LEFT)
    st = sim.agent_state()
    assert st.heading == pytest.approx(math.pi / 2)
    obs = sim.observe()
    # the west wall is at x = 0 (inner face 0.05): 1.95 m ahead
    assert obs["depth"][32, 32] == pytest.approx(1.95, abs=0.05)
    # facing -x, the agent's left is +z: the sofa (z in [3.0, 3.8]) is in the left half
    sofa = 30
    cols = np.nonzero((obs["semantic"] == sofa).any(axis=0))[0]
    assert len(cols) > 0 and cols.mean() < 32


def test_forward_moves_a_quarter_metre_and_slides_at_walls(sim):
    sim.reset("tiny_0000", [2.0, 0.0, 2.0], yaw_to_quaternion(0.0))
    sim.step(MOVE_FORWARD)
    assert sim.agent_state().position[2] == pytest.approx(1.75)
    for _ in range(12):
        sim.step(MOVE_FORWARD)
    st = sim.agent_state()
    assert st.collided
    assert 0.2 <= st.position[2] <= 0.3  # stopped at the wall, radius 0.18 from its face
    sim.step(TURN_LEFT)
    sim.step(TURN_LEFT)  # 30 degrees off the wall: slides west
    x0 = sim.agent_state().position[0]
    sim.step(MOVE_FORWARD)
    assert sim.agent_state().position[0] < x0 - 0.1


def test_same_actions_same_poses_and_frames(tiny_env):
    actions = [MOVE_FORWARD, TURN_RIGHT, MOVE_FORWARD, MOVE_FORWARD, TURN_LEFT, STOP]
    runs = []
    for _ in range(2):
        s = BuiltinSimulator(tiny_env)
        s.reset("tiny_0000", [1.0, 0.0, 1.0], yaw_to_quaternion(-2.0))
        frames = [s.step(a)["rgb"] for a in actions]
        runs.append((s.agent_state().position, frames))
        s.close()
    assert runs[0][0] == runs[1][0]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_panorama_has_12_views_matching_single_renders(sim):
    sim.reset("tiny_0000", [6.0, 0.0, 2.0], yaw_to_quaternion(0.3))
    pano = sim.panorama()
    assert pano["rgb"].shape == (12, 64, 64, 3)
    assert np.allclose(np.diff(np.unwrap(pano["headings"])), math.radians(30), atol=1e-5)
    sim.set_agent_state([6.0, 0.0, 2.0], float(pano["headings"][3]))
    single = sim.observe()
    assert np.abs(single["depth"] - pano["depth"][3]).max() < 1e-3
    assert (single["semantic"] == pano["semantic"][3]).mean() > 0.99


def test_geodesic_and_navigability_queries(sim):
    sim.load_scene("tiny_0000")
    a, b = [2.0, 0.0, 0.8], [6.0, 0.0, 0.8]
    path = sim.shortest_path(a, b)
    assert path[0][0] == pytest.approx(2.0) and path[-1][0] == pytest.approx(6.0)
    assert sim.geodesic_distance(a, b) > math.dist(a, b)  # must pass the door at z = 2
    assert sim.is_navigable([4.0, 0.0, 2.0]) and not sim.is_navigable([4.0, 0.0, 0.8])


def test_unknown_scene_and_backend_errors(sim):
    with pytest.raises(UnknownSceneError, match="unknown scene id 'nowhere'"):
        sim.reset("nowhere", [0, 0, 0], [0, 0, 0, 1])
    with pytest.raises(Exception, match="unknown simulator backend 'unity'"):
        make_simulator("unity")


def test_blind_simulator_renders_nothing(tiny_env):
    s = BuiltinSimulator(tiny_env, sensors=())
    assert s.reset("tiny_0000", [2.0, 0.0, 2.0], [0, 0, 0, 1]) == {}
    assert s._renderer is None
