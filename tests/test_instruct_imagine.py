"""Text trajectories: the JSONL format, the LLM text format and its parser, simulator ones."""

import math

import pytest

from vlnav.episodes import quaternion_to_yaw
from vlnav.instruct.imagine import (
    DIRECTIONS,
    STOP,
    Candidate,
    Step,
    TextTrajectory,
    TrajectoryFormatError,
    _nodes,
    normalise_direction,
    parse_trajectory,
    read_jsonl,
    simulate_text_trajectory,
    write_jsonl,
)
from vlnav.instruct.summary import heading_of, wrap
from vlnav.instruct.validate import Validator
from vlnav.sim.navgrid import NavGrid

GOOD = """Instruction: Walk out of the bedroom and stop next to the white fridge.
Step 1:
1. To your front is, a hallway with a grey wardrobe
2. To your 90 degree left is, a bedroom with a blue bed
Action: 1
Step 2:
1. To your 30 degree right is, a kitchen with a white fridge
Action: 1
Step 3:
1. To your back is, a hallway
Action: stop"""


def make_traj() -> TextTrajectory:
    return TextTrajectory(
        instruction="Walk out of the bedroom and stop next to the white fridge.",
        steps=[
            Step([Candidate("front", "a hallway"), Candidate("60 degree left", "a bed")], 0),
            Step([Candidate("back", "a bedroom")], STOP),
        ],
        source="imagined",
        provenance={"speaker": "openai:m", "model": "m", "prompt_hash": "ab", "seed": 1},
    )


def test_directions():
    assert len(DIRECTIONS) == 12 and DIRECTIONS[0] == "front"
    assert DIRECTIONS[1] == "30 degree left" and DIRECTIONS[6] == "back"
    assert DIRECTIONS[11] == "30 degree right"
    assert normalise_direction("60 Degrees Left") == "60 degree left"
    assert normalise_direction("90° right") == "90 degree right"
    assert normalise_direction("45 degree left") is None


def test_jsonl_round_trip(tmp_path):
    t = make_traj()
    path = write_jsonl(tmp_path / "t.jsonl", [t, t])
    assert read_jsonl(path) == [t, t]
    line = path.read_text().splitlines()[0]
    assert line.startswith('{"instruction": ') and '"action": "stop"' in line


def test_text_format_round_trip():
    t = make_traj()
    parsed = parse_trajectory(t.to_prompt())
    assert parsed.instruction == t.instruction and parsed.steps == t.steps


def test_parser_tolerates_markdown_and_preambles():
    text = "Sure! Here it is.\n\n**Instruction:** Walk out.\n\n### Step 1\n- 1) To your 30 degrees Left is, a sofa.\n**Action:** candidate 1\nStep 2:\nAction: Stop."
    t = parse_trajectory(text)
    assert t.instruction == "Walk out."
    assert t.steps[0].candidates == [Candidate("30 degree left", "a sofa")]
    assert [s.action for s in t.steps] == [0, STOP]


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda s: s.replace("Instruction: Walk", "Walk"), "no_instruction"),
        (lambda s: s.split("Step 1:")[0], "no_steps"),
        (lambda s: s.replace("90 degree left", "45 degree left"), "bad_direction"),
        (lambda s: s.replace("Action: 1\nStep 2", "Action: 3\nStep 2"), "bad_action"),
        (lambda s: s.replace("Action: 1\nStep 2", "Step 2"), "missing_action"),
        (lambda s: s.replace("Action: stop", "Action: 1"), "no_stop"),
        (lambda s: s.replace("Action: 1\nStep 2", "Action: stop\nStep 2"), "early_stop"),
        (lambda s: s.replace("90 degree left", "front"), "duplicate_direction"),
        (lambda s: "Instruction: go.\nStep 1:\nAction: stop", "too_few_steps"),
        (lambda s: s.replace("Action: 1\nStep 2", "Action: forward\nStep 2"), "bad_action"),
    ],
)
def test_malformed_outputs_are_rejected_with_a_reason(edit, reason):
    with pytest.raises(TrajectoryFormatError) as e:
        parse_trajectory(edit(GOOD))
    assert e.value.reason == reason
    traj, reasons = Validator().check_imagined(edit(GOOD))
    assert traj is None and reasons == [reason]


def test_imagined_instruction_must_be_grounded_in_its_views():
    traj, reasons = Validator().check_imagined(GOOD)
    assert reasons == [] and traj.source == "imagined"
    ungrounded = GOOD.replace("white fridge.", "white fridge and the piano.")
    assert Validator().check_imagined(ungrounded)[1] == ["ungrounded_object"]


def test_from_dict_validates():
    d = make_traj().to_dict()
    d["steps"][0]["action"] = 5
    with pytest.raises(TrajectoryFormatError, match="bad_action"):
        TextTrajectory.from_dict(d)


def test_simulated_trajectory_follows_the_reference_path(two_room_spec, tiny_episodes):
    grid = NavGrid.from_spec(two_room_spec)
    for ep in tiny_episodes:
        t = simulate_text_trajectory(two_room_spec, grid, ep, "Go to the fridge.")
        assert t.instruction == "Go to the fridge." and t.episode_id == ep.episode_id
        assert t.steps[-1].action == STOP and all(s.action != STOP for s in t.steps[:-1])
        assert all(c.direction in DIRECTIONS for s in t.steps for c in s.candidates)
        TextTrajectory.from_dict(t.to_dict())  # valid
        # each chosen view looks (within 15 degrees) towards the next decision point
        nodes = _nodes(ep.reference_path)
        heading = quaternion_to_yaw(ep.start_rotation)
        for step, a, b in zip(t.steps, nodes[:-1], nodes[1:]):
            k = DIRECTIONS.index(step.candidates[step.action].direction)
            want = heading_of(a, b)
            assert abs(wrap(heading + math.radians(30 * k) - want)) <= math.radians(15) + 1e-9
            heading = want
        assert "fridge" in t.to_prompt()


def test_directions_match_the_perception_stage():
    cand = pytest.importorskip(
        "vlnav.perception.candidates", reason="the perception stage is not in this checkout"
    )
    assert list(DIRECTIONS) == [cand.direction_phrase(30 * k) for k in range(12)]


def test_the_policy_trainer_reads_text_trajectories(tmp_path):
    train = pytest.importorskip("vlnav.train", reason="the policy stage is not in this checkout")
    path = write_jsonl(tmp_path / "t.jsonl", [make_traj()])
    ((instruction, decisions),) = train.load_imagined(path)
    assert instruction == make_traj().instruction and len(decisions) == 2
    assert [len(d.obs.candidates) for d in decisions] == [2, 1]
