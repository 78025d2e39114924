"""Validation: length, landmarks, hallucinations against the SceneSpec, duplicates."""

import pytest

from vlnav.instruct.config import ValidateConfig
from vlnav.instruct.lexicon import Lexicon
from vlnav.instruct.summary import summarize_path
from vlnav.instruct.validate import Validator, clean_text, dedupe_key


@pytest.fixture
def summary(two_room_spec):
    return summarize_path(two_room_spec, [[1.0, 0.0, 2.0], [4.0, 0.0, 2.0], [7.0, 0.0, 1.2]])


@pytest.mark.parametrize(
    "text, reasons",
    [
        ("Walk past the red sofa into the kitchen and stop next to the white fridge.", []),
        ("Leave the lounge, walk into the kitchen and wait by the refrigerator.", []),
        ("Walk past the couches and into the kitchen, then stop at the fridge.", []),
        (
            "Walk into the kitchen and stop by the piano next to the white fridge.",
            ["hallucinated_object"],
        ),
        (
            "Walk into the kitchen and stop by the table next to the white fridge.",
            ["hallucinated_object"],
        ),
        ("Walk past the blue sofa into the kitchen and stop next to the fridge.", ["wrong_colour"]),
        (
            "Walk through the bathroom into the kitchen and stop next to the fridge.",
            ["hallucinated_room"],
        ),
        ("Walk out of this room into the kitchen and then stop right there.", ["no_landmark"]),
        ("Stop at the fridge.", ["too_short"]),
        ("order sofa sofa sofa sofa sofa sofa sofa sofa sofa fridge kitchen", ["repetitive"]),
        ("The red sofa and the white fridge are in the kitchen over there.", ["no_motion_verb"]),
        ("", ["empty"]),
    ],
)
def test_reasons(summary, text, reasons):
    assert Validator().check(text, summary) == reasons


def test_too_long_and_configurable_bounds(summary):
    long = "Walk past the red sofa and " * 20 + "stop at the fridge."
    assert Validator().check(long, summary) == ["too_long"]
    assert Validator(ValidateConfig(max_words=200)).check(long, summary) == []


def test_duplicates_ignore_case_and_punctuation(summary):
    v = Validator()
    text = "Walk past the red sofa into the kitchen and stop next to the white fridge."
    assert v.check(text, summary) == []
    v.accept(text)
    again = "walk past the red sofa, into the kitchen and stop next to the white fridge"
    assert v.check(again, summary) == ["duplicate"]
    assert dedupe_key(text) == dedupe_key(again)
    assert Validator(ValidateConfig(dedupe=False)).check(again, summary) == []


def test_checks_can_be_switched_off(summary):
    cfg = ValidateConfig(require_landmark=False, check_objects=False, check_rooms=False)
    text = "Walk through the bathroom and stop next to the piano over there."
    assert Validator(cfg).check(text, summary) == []


def test_clean_text_strips_reasoning_labels_and_quotes():
    raw = '<think>the path goes\nleft</think>\nInstruction: "Walk past the sofa and stop."'
    assert clean_text(raw) == "Walk past the sofa and stop."
    assert clean_text("  Here is the instruction:  Turn left.  ") == "Turn left."


def test_lexicon_longest_match_synonyms_and_colours():
    lex = Lexicon.default()
    found = [
        (m.kind, m.phrase, m.colour)
        for m in lex.mentions(
            "Pass the dark brown dining chairs in the dining room, then the TV stand in the hall."
        )
    ]
    assert found == [
        ("object", "dining chair", "dark brown"),
        ("room", "dining room", None),
        ("object", "tv stand", None),
        ("room", "hall", None),
    ]
    (table,) = lex.mentions("the table")
    assert {"coffee table", "dining table", "desk"} <= table.targets
    assert lex.mentions("a dishwasher")[0].targets == frozenset({"dishwasher"})
