"""Path summaries: rooms, doorways, turns (Habitat's sign: positive = left), landmarks."""

import math

import pytest

from vlnav.episodes import yaw_to_quaternion
from vlnav.instruct.summary import (
    PathSummary,
    SightMap,
    SummaryConfig,
    find_turns,
    heading_of,
    relative_side,
    summarize_path,
)


def test_heading_follows_habitat_convention():
    assert heading_of([0, 0, 0], [0, 0, -1]) == pytest.approx(0.0)  # -z is forward
    assert heading_of([0, 0, 0], [-1, 0, 0]) == pytest.approx(math.pi / 2)  # -x is left
    assert relative_side(0.0, math.pi / 2) == "left"
    assert relative_side(0.0, -math.pi / 2) == "right"
    assert relative_side(0.0, math.pi) == "behind"


@pytest.mark.parametrize(
    "path, expected",
    [
        ([[0, 0, 0], [0, 0, -2], [-2, 0, -2]], "left"),  # forward, then towards -x
        ([[0, 0, 0], [0, 0, -2], [2, 0, -2]], "right"),
        ([[1, 0, 1], [3, 0, 1], [3, 0, 3]], "right"),  # +x, then +z
        ([[0, 0, 0], [0, 0, -2], [0.3, 0, -2], [0.3, 0, 0]], "around"),  # a U in 0.3 m
    ],
)
def test_turn_directions(path, expected):
    turns = find_turns(path, SummaryConfig())
    assert [t[2] for t in turns] == [expected]


def test_small_kinks_merge_into_one_turn_and_bends_are_ignored():
    cfg = SummaryConfig()
    s = math.sqrt(0.5) * 0.3
    two_kinks = [[0, 0, 0], [0, 0, -2], [-s, 0, -2 - s], [-s - 2, 0, -2 - s]]
    assert [t[2] for t in find_turns(two_kinks, cfg)] == ["left"]
    bend = [[0, 0, 0], [0, 0, -2], [0.5, 0, -4]]  # 14 degrees
    assert find_turns(bend, cfg) == []


def test_sight_is_blocked_by_walls_not_by_doorways(two_room_spec):
    sight = SightMap(two_room_spec)
    assert sight.visible((1.0, 2.0), (7.0, 2.0))  # through the door at z = 2
    assert not sight.visible((1.0, 0.8), (7.0, 0.8))  # through the wall at x = 4


def test_summary_of_a_two_room_path(two_room_spec):
    path = [[1.0, 0.0, 2.0], [4.0, 0.0, 2.0], [7.0, 0.0, 1.2]]
    facing_path = yaw_to_quaternion(heading_of(path[0], path[1]))
    s = summarize_path(two_room_spec, path, start_rotation=facing_path, episode_id=7)
    assert s.rooms == ["living room", "kitchen"]
    assert [e.kind for e in s.events] == ["start", "door", "goal"]
    assert s.events[0].direction is None
    door = s.events[1]
    assert (door.from_room, door.room) == ("living room", "kitchen")
    assert door.position[0] == pytest.approx(4.0) and door.position[2] == pytest.approx(2.0)
    goal = s.goal
    assert goal.room == "kitchen" and goal.landmarks[0].name == "white fridge"
    assert goal.landmarks[0].distance < 1.0
    assert s.room_categories == ["fridge", "sofa"]
    assert s.room_objects == ["red sofa", "white fridge"]
    # landmarks are only ever objects of the room the agent is in
    assert all(lm.room == e.room for e in s.events for lm in e.landmarks)
    assert PathSummary.from_dict(s.to_dict()) == s
    text = s.to_prompt()
    assert text.splitlines()[0] == "Rooms along the path, in order: living room, kitchen."
    assert "Landmarks you may mention: " in text and "white fridge" in text


def test_start_turn_comes_from_the_start_rotation(two_room_spec):
    path = [[1.0, 0.0, 2.0], [4.0, 0.0, 2.0], [7.0, 0.0, 2.0]]
    h = heading_of(path[0], path[1])
    for yaw, expected in (
        (h + math.pi, "around"),
        (h - math.pi / 2, "left"),
        (h + math.pi / 2, "right"),
    ):
        s = summarize_path(two_room_spec, path, start_rotation=yaw_to_quaternion(yaw))
        assert s.events[0].direction == expected


def test_captions_are_an_optional_input(two_room_spec):
    path = [[1.0, 0.0, 2.0], [7.0, 0.0, 2.0]]
    s = summarize_path(two_room_spec, path, captions=["a red sofa", "a white fridge"])
    assert "Views along the path:\n- a red sofa" in s.to_prompt()


def test_bad_summary_config_names_the_field():
    from vlnav.config import ConfigError

    with pytest.raises(ConfigError, match="landmarks_per_event"):
        SummaryConfig(landmarks_per_event=0)
