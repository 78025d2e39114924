"""The policy's prompt: one whole episode as one token sequence.

    <bos> navigate by following the instruction . instruction : <instruction text>
    <step> to your front is , a hallway with a white shoe rack ahead . <A>
           to your 60 degree left is , a kitchen with a silver fridge on the right . <C>
           ...
           stop . <STOP> <ans> <C>
    <step> ... <ans> <STOP>

Each decision appends a ``<step>`` segment (the candidate views as LangNav-style text, each
followed by its label token: ``<A>`` is the view straight ahead, ``<B>`` 30 degrees to the
left, ... ``<L>`` 30 degrees to the right) and, after ``<ans>``, the label that was chosen.
The label closes its line so that its own hidden state can gather the line's content, and
answering is then a matter of attending to the right label and copying it. The
earlier segments are the history. The policy scores the labels present at ``<ans>`` with the
LM and takes the best, so it can never answer with an invalid action. Training computes the
loss at every ``<ans>`` of an episode in one pass; inference appends segments to a KV cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vlnav.perception.candidates import TextObservation

LABELS = [f"<{c}>" for c in "ABCDEFGHIJKL"]  # view k (30*k degrees to the left) -> LABELS[k]
STOP_LABEL = "<STOP>"
SPECIAL = ["<pad>", "<unk>", "<bos>", "<step>", "<ans>", STOP_LABEL, *LABELS]
HEADER = "navigate by following the instruction . instruction :"

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-case word / punctuation split (the tokenizer's pre-tokenisation)."""
    return _WORD.findall(text.lower())


def header_text(instruction: str) -> str:
    return f"<bos> {HEADER} {' '.join(words(instruction))}"


PROMPT_STYLES = ("langnav", "compact", "distances")
# words the compact style drops from a caption: they carry no choice-relevant content
_FILLER = frozenset(["a", "an", "the", "with", "on", "of", "to", "your", "is", "in", "there"])


def candidate_line(c, style: str = "langnav") -> str:
    """One candidate's line, closed by its label token.

    ``langnav``: ``to your 30 degree left is , a kitchen with a white fridge on the left . <B>``
    ``compact``: ``kitchen white fridge left . <B>`` (the label already names the direction;
    articles and prepositions dropped), about a third of the tokens.
    ``distances``: compact, with each mentioned object's distance in whole metres after its
    side (``kitchen white fridge left 2 , doorway ahead <B>``), from the caption's structured
    mentions; captions without them (pixel captioners) read as ``compact``.
    """
    if style == "distances" and _has_distances(c.caption):
        body = _distance_words(c.caption)
    elif style in ("compact", "distances"):
        body = [w for w in words(c.caption.text) if w not in _FILLER]
    else:
        body = words(c.to_text(details=False))
    return f"{' '.join(body)} {LABELS[c.index]}"


_DOORWAY = re.compile(r"doorway (?:on the )?(left|right|ahead)")


def _has_distances(caption) -> bool:
    return bool(caption.room and caption.mentions) and all(
        m.distance is not None for m in caption.mentions
    )


def _distance_words(caption) -> list[str]:
    out = words(caption.room)
    for m in caption.mentions:
        out += words(m.name) + ([m.side] if m.side else []) + [str(max(1, round(m.distance)))]
        out.append(",")
    door = _DOORWAY.search(caption.text.lower())
    if door:
        out += ["doorway", door.group(1)]
    elif out[-1] == ",":
        out.pop()
    return out


def step_text(obs: TextObservation, style: str = "langnav") -> str:
    """The ``<step>`` segment of one decision, ending with ``<ans>``."""
    parts = ["<step>"]
    for c in obs.candidates:
        parts.append(candidate_line(c, style))
    parts.append(f"stop . {STOP_LABEL} <ans>")
    return " ".join(parts)


def labels_of(obs: TextObservation) -> list[str]:
    """The answer labels available at this decision (candidates, then Stop)."""
    return [LABELS[c.index] for c in obs.candidates] + [STOP_LABEL]


@dataclass
class Decision:
    """One decision of an episode: the observation and the label chosen (or to learn)."""

    obs: TextObservation
    label: str
    features: object = None  # (12, D) visual features of the panorama, when fused
