"""Prompt files: they load, the few-shot examples obey the rules they teach, seeds vary them."""

import pytest

from vlnav import VlnavError
from vlnav.instruct.lexicon import Lexicon
from vlnav.instruct.prompts import PROMPTS_DIR, PromptBook, prompt_hash
from vlnav.instruct.summary import summarize_path


@pytest.fixture(scope="module")
def book():
    return PromptBook.load()


def test_examples_name_only_their_listed_landmarks(book):
    lex = Lexicon.default()
    assert len(book.examples) >= 6
    for summary, instruction in book.examples:
        assert summary.startswith("Rooms along the path, in order: ")
        listed = summary.split("Landmarks you may mention: ")[1].rstrip(".").split(", ")
        rooms = summary.splitlines()[0].split(": ")[1].rstrip(".").split(", ")
        cats = {c for name in listed for m in lex.mentions(name) for c in m.targets}
        mentions = lex.mentions(instruction)
        objects = [m for m in mentions if m.kind == "object"]
        assert objects and all(m.targets & cats for m in objects), instruction
        assert all(m.targets & set(rooms) for m in mentions if m.kind == "room"), instruction
        assert 15 <= len(instruction.split()) <= 40, instruction


def test_instruction_messages(book, two_room_spec):
    s = summarize_path(two_room_spec, [[1.0, 0.0, 2.0], [7.0, 0.0, 2.0]])
    msgs = book.instruction_messages(s, seed=1, few_shot=3)
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert s.to_prompt() in msgs[-1]["content"]
    assert "only" in msgs[0]["content"]  # told to use only the given landmarks
    same = book.instruction_messages(s, seed=1, few_shot=3)
    assert prompt_hash(same) == prompt_hash(msgs)
    hashes = {prompt_hash(book.instruction_messages(s, seed=k, few_shot=3)) for k in range(8)}
    assert len(hashes) > 4  # another attempt gets another prompt
    assert len(book.instruction_messages(s, seed=1, few_shot=0)) == 2


def test_missing_prompt_file_is_a_one_line_error(tmp_path):
    with pytest.raises(VlnavError, match="prompt file not found") as e:
        PromptBook.load(tmp_path)
    assert "\n" not in str(e.value)
    for f in PROMPTS_DIR.iterdir():
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "instruction_examples.yaml").write_text("examples: [{summary: x}]\n")
    with pytest.raises(VlnavError, match="expected 'examples'"):
        PromptBook.load(tmp_path)
