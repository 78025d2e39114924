"""Semantic captions and candidate views as text, checked against the instance-id images."""

import math

import numpy as np
import pytest

from vlnav.agents import OracleAgent
from vlnav.config import EnvConfig, SensorConfig
from vlnav.episodes import yaw_to_quaternion
from vlnav.perception import View, make_captioner
from vlnav.perception.cache import ObservationCache
from vlnav.perception.candidates import (
    DETOUR,
    TextObserver,
    direction_phrase,
    find_path_waypoint,
    find_waypoint,
)
from vlnav.sim.builtin import BuiltinSimulator


def test_direction_phrases():
    assert direction_phrase(0) == "front"
    assert direction_phrase(30) == "30 degree left"
    assert direction_phrase(180) == "back"
    assert direction_phrase(330) == "30 degree right"
    assert direction_phrase(-90) == "90 degree right"


def test_semantic_caption_of_a_synthetic_view():
    sem = np.zeros((30, 30), np.int32)
    sem[20:, :] = 1  # floor of the kitchen
    sem[5:15, 22:29] = 7  # fridge on the right
    sem[5:12, 0:5] = 9  # doorway on the left
    depth = np.full((30, 30), 2.0, np.float32)
    objects = {
        1: {"category": "floor", "colour": None, "room": 0, "room_type": "kitchen"},
        7: {"category": "fridge", "colour": "white", "room": 0, "room_type": "kitchen"},
        9: {"category": "doorway", "colour": None, "room": 0, "room_type": "kitchen"},
    }
    cap = make_captioner("semantic").caption([View(depth=depth, semantic=sem, objects=objects)])[0]
    assert cap.text == "A kitchen with a white fridge on the right, a doorway on the left."
    assert cap.room == "kitchen" and cap.doorway
    assert cap.details() == ["white fridge (2 m, right)"]
    assert cap.beyond is None  # beyond=False (the default) never names the next room
    # the floor of a hallway seen through the doorway: beyond=True names it
    sem[12:20, 0:5] = 2
    objects[2] = {"category": "floor", "colour": None, "room": 1, "room_type": "hallway"}
    views = [View(depth=depth, semantic=sem, objects=objects)]
    cap = make_captioner("semantic", beyond=True).caption(views)[0]
    assert cap.text == (
        "A kitchen with a white fridge on the right, a doorway on the left to a hallway."
    )
    assert cap.room == "kitchen" and cap.beyond == "hallway"
    assert type(cap).from_dict(cap.to_dict()) == cap
    assert make_captioner("semantic", beyond=True).identity != make_captioner("semantic").identity
    sem[5:12, 0:5] = 0  # no doorway in view: no room beyond either
    assert make_captioner("semantic", beyond=True).caption(views)[0].beyond is None


def test_semantic_caption_names_the_room_where_the_move_ends():
    """``dest=True``: the floor in the middle of the view at the move's depth (``reach``)."""
    sem = np.zeros((30, 30), np.int32)
    depth = np.tile(np.linspace(6.0, 0.5, 30, dtype=np.float32)[:, None], (1, 30))
    sem[15:, :] = 1  # the kitchen floor, near (depth below 3.3 m)
    sem[8:15, :] = 2  # the hallway floor behind it (depth 3.5 to 4.6 m)
    sem[2:6, 25:29] = 7  # a fridge, ranked first
    sem[2:6, 0:4] = 8  # a chair, ranked second
    objects = {
        1: {"category": "floor", "colour": None, "room": 0, "room_type": "kitchen"},
        2: {"category": "floor", "colour": None, "room": 1, "room_type": "hallway"},
        7: {"category": "fridge", "colour": "white", "room": 0, "room_type": "kitchen"},
        8: {"category": "chair", "colour": "red", "room": 0, "room_type": "kitchen"},
    }
    cap = make_captioner("semantic", max_objects=1, dest=True, more=2)

    def caption(reach):
        view = View(depth=depth, semantic=sem, objects=objects, reach=reach)
        return cap.caption([view])[0]

    assert caption(2.0).dest == "kitchen" and caption(4.0).dest == "hallway"
    assert caption(4.0).text.endswith("Walking ahead leads into a hallway.")
    assert caption(None).dest is None  # no move known: nothing said
    assert caption(9.0).dest is None  # that floor is not in view
    # ``more`` keeps the next ranked object out of the sentence, as a structured mention
    c = caption(2.0)
    assert [m.category for m in c.mentions] == ["fridge"] and "chair" not in c.text
    assert [m.category for m in c.more] == ["chair"]
    assert type(c).from_dict(c.to_dict()) == c
    assert cap.identity != make_captioner("semantic", max_objects=1).identity


def test_destination_rooms_agree_with_the_floor_plan(house):
    """On a real house, the captioned room where a candidate's move ends is the floor plan's
    room at its waypoint for most candidates (the rest: that floor hidden or mixed)."""
    sim, scene = house
    spec = sim.load_scene(scene)
    observer = TextObserver(sim, make_captioner("semantic", dest=True))
    rng = np.random.default_rng(3)
    agree = total = 0
    for _ in range(8):
        sim.set_agent_state(sim.grid.random_point(rng), float(rng.uniform(-math.pi, math.pi)))
        for c in observer.observe(scene).candidates:
            room = spec.room_at(c.waypoint[0], c.waypoint[2])
            total += 1
            agree += room is not None and c.caption.dest == room.type
    assert total >= 20 and agree / total >= 0.75, (agree, total)


@pytest.fixture(scope="module")
def house(tmp_path_factory):
    from vlnav.scenes.generator import generate_houses

    root = tmp_path_factory.mktemp("data")
    generate_houses(1, 11, root / "scenes", progress=False)
    cfg = EnvConfig(data_dir=str(root), sensor=SensorConfig(width=96, height=96))
    sim = BuiltinSimulator(cfg)
    yield sim, "house_0000"
    sim.close()


def test_oracle_rollout_candidates_name_what_is_in_view(house):
    """At every decision, every object a candidate caption names is visible in that view's
    instance-id image, with the category and colour the scene gives it."""
    sim, scene = house
    spec = sim.load_scene(scene)
    rng = np.random.default_rng(0)
    start, goal = sim.grid.random_point(rng), sim.grid.random_point(rng)
    sim.reset(scene, start, yaw_to_quaternion(0.0))
    observer = TextObserver(sim, make_captioner("semantic"))
    agent = OracleAgent()

    class Ep:
        goal_position = goal

    agent.reset(Ep, sim, 0)
    objects = sim.objects()
    checked = 0
    for step in range(400):
        if step % 8 == 0:  # a decision
            obs = observer.observe(scene)
            assert obs.candidates, "an open floor always has some candidate direction"
            pano = sim.panorama(sensors=("semantic",))
            text = obs.to_text()
            for c in obs.candidates:
                visible = set(np.unique(pano["semantic"][c.index]).tolist())
                room_types = {objects[i]["room_type"] for i in visible if i in objects}
                if c.caption.room:
                    assert c.caption.room in room_types
                for m in c.caption.mentions:
                    assert m.instance_id in visible
                    assert objects[m.instance_id]["category"] == m.category
                    assert objects[m.instance_id]["colour"] == m.colour
                    assert m.name in text
                    checked += 1
                assert sim.is_navigable(c.waypoint)
        a = agent.act({}, sim.agent_state())
        if a == 0:
            break
        sim.step(a)
    assert checked > 5
    assert spec.scene_id == scene


def test_waypoints_stop_at_walls(tiny_env):
    sim = BuiltinSimulator(tiny_env, sensors=())
    sim.reset("tiny_0000", [2.0, 0, 2.0], [0, 0, 0, 1])
    wp, d = find_waypoint(sim, [2.0, 0, 2.0], 0.0, max_range=3.0)
    assert 1.5 < d < 1.8  # the north wall's face is 1.95 m away, minus the 0.18 m radius
    assert find_waypoint(sim, [2.0, 0, 2.0], 0.0, max_range=3.0, min_range=2.0) is None
    wp, d = find_waypoint(sim, [2.0, 0, 2.0], -math.pi / 2, max_range=3.0)  # east: the doorway
    assert d == pytest.approx(3.0)


def test_path_waypoints_pass_a_doorway_a_straight_walk_misses(tiny_env):
    """East from (3.2, 1.6) a straight walk meets the end of the shared wall (the door spans
    z in [1.5, 2.5]; the agent's 0.18 m radius needs z >= 1.68) after about half a metre: no
    straight candidate. The path waypoint is 3 m east in the kitchen, its path bent round
    the door frame by a few centimetres."""
    from vlnav import VlnavError

    sim = BuiltinSimulator(tiny_env, sensors=())
    p, east = [3.2, 0.0, 1.6], -math.pi / 2
    sim.reset("tiny_0000", p, yaw_to_quaternion(east))
    assert find_waypoint(sim, p, east) is None
    wp, g = find_path_waypoint(sim, p, east)
    assert wp[0] == pytest.approx(6.2) and wp[2] == pytest.approx(1.6)  # the full 3 m
    assert g == pytest.approx(sim.geodesic_distance(wp, p))
    assert 3.0 < g <= DETOUR * 3.0 + 0.25  # round the door frame, not through the wall
    # from (3.2, 0.8) the door is far off the heading: the way round is 3.6 m for a 3 m
    # point, beyond the default bound; a looser bound takes it
    q = [3.2, 0.0, 0.8]
    assert find_path_waypoint(sim, q, east) is None
    wp2, g2 = find_path_waypoint(sim, q, east, detour=1.25)
    assert wp2[0] == pytest.approx(6.2) and 3.4 < g2 <= 1.25 * 3.0 + 0.25
    # west: open floor, the path is the straight line (the wall's face + radius at x 0.23)
    wp3, g3 = find_path_waypoint(sim, p, math.pi / 2)
    assert wp3[0] == pytest.approx(0.45) and g3 == pytest.approx(2.75, abs=0.05)
    # heading 0 (-z) from z 0.8: 0.57 m of floor before the wall, nothing at 0.75 m or more
    assert find_path_waypoint(sim, q, 0.0) is None
    obs = TextObserver(sim, make_captioner("semantic"), waypoints="path").observe("tiny_0000")
    straight = TextObserver(sim, make_captioner("semantic")).observe("tiny_0000")
    assert 0 in [c.index for c in obs.candidates] and 0 not in [
        c.index for c in straight.candidates
    ]
    with pytest.raises(VlnavError, match="waypoints 'curved'"):
        TextObserver(sim, make_captioner("semantic"), waypoints="curved")
    sim.close()


def test_cache_hits_and_identity_invalidation(house, tmp_path):
    sim, scene = house
    sim.load_scene(scene)
    sim.reset(scene, sim.grid.random_point(np.random.default_rng(1)), [0, 0, 0, 1])
    cache = ObservationCache(tmp_path / "obs.sqlite")
    a = TextObserver(sim, make_captioner("semantic"), cache=cache).observe(scene)
    b = TextObserver(sim, make_captioner("semantic"), cache=cache).observe(scene)
    assert cache.hits == 1 and a.to_text() == b.to_text()
    other = make_captioner("semantic", max_objects=1)
    c = TextObserver(sim, other, cache=cache).observe(scene)
    assert cache.misses == 2  # another identity is never served the old entry
    assert all(len(x.caption.mentions) <= 1 for x in c.candidates)
    # path waypoints are other candidates: never served the straight ones
    d = TextObserver(sim, make_captioner("semantic"), cache=cache, waypoints="path").observe(scene)
    assert cache.misses == 3 and cache.hits == 1
    assert [x.waypoint for x in d.candidates] != [x.waypoint for x in a.candidates]
    assert cache.prune({other.identity}) == 2 and len(cache) == 1
    feat = np.arange(6, dtype=np.float32)
    k = cache.key(scene, [1, 0, 1], 0.0, "enc", kind="feat")
    cache.put(k, feat)
    assert np.array_equal(cache.get(k), feat)


def test_captioner_options_are_checked_with_one_line_errors():
    from vlnav.config import ConfigError
    from vlnav.perception.base import make_captioner

    assert "-beyond" in make_captioner("semantic", max_objects=2, beyond=True).identity
    bad = [
        ({"max_obj": 2}, "max_obj: the 'semantic' captioner has no such option"),
        ({"more": -1}, "more=-1 is out of range"),
        ({"max_objects": 2.5}, "max_objects=2.5 should be a whole number"),
        ({"min_area": 3.0}, "min_area=3.0 is out of range"),
    ]
    for kwargs, msg in bad:
        with pytest.raises(ConfigError, match=msg) as err:
            make_captioner("semantic", **kwargs)
        assert "\n" not in str(err.value)


def test_a_train_config_with_a_bad_captioner_option_fails_when_read(tmp_path):
    """Checked in the main process when the config is read, not in the collection workers
    (a pool worker failing in its initializer is restarted forever)."""
    from vlnav.config import ConfigError, load_config
    from vlnav.train import TrainConfig

    path = tmp_path / "bad.yaml"
    path.write_text("captioner: {name: semantic, kwargs: {max_objects: 2, max_obj: 3}}\n")
    with pytest.raises(ConfigError, match=r"captioner\.kwargs\.max_obj: the 'semantic'"):
        load_config(TrainConfig, path)
    path.write_text("captioner: {name: semantic, kwargs: {more: -1}}\n")
    with pytest.raises(ConfigError, match=r"captioner\.kwargs\.more=-1 is out of range"):
        load_config(TrainConfig, path)
