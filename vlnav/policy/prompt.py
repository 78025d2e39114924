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
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from vlnav.perception.candidates import TextObservation

LABELS = [f"<{c}>" for c in "ABCDEFGHIJKL"]  # view k (30*k degrees to the left) -> LABELS[k]
STOP_LABEL = "<STOP>"
SPECIAL = ["<pad>", "<unk>", "<bos>", "<step>", "<ans>", STOP_LABEL, *LABELS]
HEADER = "navigate by following the instruction . instruction :"

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-case word / punctuation split (the tokenizer's pre-tokenisation)."""
    return list(_words(text))


@lru_cache(maxsize=65536)
def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.lower()))


def header_text(instruction: str) -> str:
    return f"<bos> {HEADER} {' '.join(words(instruction))}"


PROMPT_STYLES = ("langnav", "compact", "distances", "matched", "here", "terse")
MARKED = ("matched", "here", "terse")  # the styles that mark the instruction's landmarks
NEAR = 2.5  # metres: the ``here`` style's Stop line names the objects this close
NEAR_MAX = 3  # ... at most this many, nearest first
MAX_MARKS = 8  # landmark marks lm1 .. lm8 (later landmarks share lm8)
# words the compact style drops from a caption: they carry no choice-relevant content
_FILLER = frozenset(["a", "an", "the", "with", "on", "of", "to", "your", "is", "in", "there"])


def landmark_marks(instruction: str) -> dict[str, str]:
    """The ``matched`` style's marks: each object and room the instruction names -> ``lm<k>``,
    k its landmark's place in the instruction (the last place where it is named, counted from
    1), and ``lmlast`` for the final landmark (usually where to stop).

    Keys are room types, object categories, and "<colour> <category>" when the instruction
    gives a colour (then only an object of that colour is marked). The instruction's phrases
    are found with the speaker's lexicon, so synonyms and head nouns ("the couch", "the
    table") mark every category they may name.
    """
    from vlnav.instruct.lexicon import Lexicon

    mentions = Lexicon.default().mentions(instruction)
    marks: dict[str, str] = {}
    for k, m in enumerate(mentions, 1):
        word = "lmlast" if k == len(mentions) else f"lm{min(k, MAX_MARKS)}"
        for t in m.targets:
            coloured = m.kind == "object" and m.colour
            marks[f"{m.colour.lower()} {t}" if coloured else t] = word
    return marks


START_TURN_KEY = "<start turn>"  # in a marks dict: the instruction's opening turn
# "turn right and ...", "face left", "make a left", "spin around", "turn to face the other
# way": a turn verb, then left / right / around in the instruction's first clause
_OPENING = re.compile(r"^\s*(?:turn|face|make|spin)\b")
_CLAUSE_END = re.compile(r"[,.;!]| and | then ")
_TURN_WORD = re.compile(r"\b(left|right|around|other way|u-turn)\b")
# the views (30 * k degrees to the left) that agree with each opening turn: the speakers
# call a start heading change of 40 to 140 degrees a turn and more than 140 a turn around
# (``instruct.summary``), so the sectors reach one view beyond those bounds
_START_VIEWS = {"left": {1, 2, 3, 4, 5}, "right": {7, 8, 9, 10, 11}, "around": {5, 6, 7}}


def start_turn(instruction: str) -> str | None:
    """The instruction's opening turn, when its first clause is one: "left", "right" or
    "around" ("Make a right and exit the kitchen" -> "right"); None otherwise."""
    text = " " + instruction.lower().strip()
    first = _CLAUSE_END.split(text + " ", maxsplit=1)[0]
    if not _OPENING.match(first):
        return None
    word = _TURN_WORD.search(first)
    if word is None:
        return None
    return word.group(1) if word.group(1) in ("left", "right") else "around"


def start_turn_views(turn: str | None) -> set[int]:
    """The candidate views an opening turn points to (empty for None)."""
    return set(_START_VIEWS.get(turn or "", ()))


def _mark(marks: dict[str, str], category: str, colour: str | None = None) -> list[str]:
    """[the mark of this (coloured) object or room] when the instruction names it, else []."""
    word = (colour and marks.get(f"{colour} {category}")) or marks.get(category)
    return [word] if word else []


def mark_words() -> list[str]:
    return [f"lm{k}" for k in range(1, MAX_MARKS + 1)] + ["lmlast"]


def visited_views(obs: TextObservation, earlier, radius: float) -> set[int]:
    """The candidates whose waypoint lies within ``radius`` metres (on the floor plane) of a
    place where the agent took an earlier decision (``earlier``: their positions): the
    ``visited`` mark of ``policy.visited``, from the agent's own odometry. Empty when
    ``radius`` is 0 (off)."""
    if radius <= 0 or not earlier:
        return set()
    out = set()
    for c in obs.candidates:
        x, z = c.waypoint[0], c.waypoint[2]
        if any((x - p[0]) ** 2 + (z - p[2]) ** 2 <= radius * radius for p in earlier):
            out.add(c.index)
    return out


def _main_room(caps) -> str:
    """The room most of these captions show (ties: the first view's)."""
    return Counter(cap.room for cap in caps).most_common(1)[0][0]


def _near(caps, within: float) -> list:
    """The objects these captions place within ``within`` metres (named or further ones)."""
    return [
        m
        for cap in caps
        for m in [*cap.mentions, *cap.more]
        if m.distance is not None and m.distance <= within
    ]


def passed_marks(observations, marks: dict[str, str] | None) -> list[str]:
    """The instruction's landmarks the agent has reached at its decisions so far
    (``observations``: the episode's observations up to and including the current one), in
    the instruction's order: a room counts when it is the room most of a decision's views
    show, an object when some view shows it within ``NEAR`` metres. The ``policy.progress``
    words (``passed lm1 lm2``): what the agent has done of the instruction, from its own
    observations, so the model need not track it over the history."""
    if not marks:
        return []
    got: set[str] = set()
    for obs in observations:
        caps = [c.caption for c in obs.candidates if _has_distances(c.caption)]
        if not caps:
            continue
        got.update(_mark(marks, _main_room(caps)))
        for m in _near(caps, NEAR):
            got.update(_mark(marks, m.category, m.colour))
    order = mark_words()
    return sorted(got, key=order.index)


def progress_words(observations, marks: dict[str, str] | None) -> list[str]:
    """``passed lm1 lm3`` (or ``passed none``): see ``passed_marks``."""
    return ["passed", *(passed_marks(observations, marks) or ["none"])]


def stop_allowed(obs: TextObservation, marks: dict[str, str] | None, within: float) -> bool:
    """The stop gate (``policy.stop_gate``): may the agent stop here? Only where the
    instruction's final landmark is around it: an object of that category (and colour, when
    the instruction gives one) within ``within`` metres in some view, or the room most of
    its views show when the final landmark is a room. True when there is nothing to check
    (no marks, no final landmark, captions without rooms, no candidates)."""
    caps = [c.caption for c in obs.candidates if c.caption.room]
    if not caps or not marks or "lmlast" not in marks.values():
        return True
    if _mark(marks, _main_room(caps)) == ["lmlast"]:
        return True
    return final_landmark_near(obs, marks, within)


def final_landmark_near(obs: TextObservation, marks: dict[str, str] | None, within: float) -> bool:
    """Does some view show an object marked as the instruction's final landmark (its
    category, and colour when the instruction gives one) within ``within`` metres?"""
    caps = [c.caption for c in obs.candidates if c.caption.room]
    return bool(marks) and any(_is_final(marks, m) for m in _near(caps, within))


def _is_final(marks: dict[str, str], m) -> bool:
    """Is this object the instruction's final landmark? Its category and colour, or its
    category alone when the instruction's last mention gives no colour ("past the white
    coffee table ... stop at the coffee table": any coffee table)."""
    return "lmlast" in (marks.get(f"{m.colour} {m.category}"), marks.get(m.category))


def candidate_line(
    c,
    style: str = "langnav",
    marks: dict[str, str] | None = None,
    visited: bool = False,
    turn: bool = False,
) -> str:
    """One candidate's line, closed by its label token.

    ``langnav``: ``to your 30 degree left is , a kitchen with a white fridge on the left . <B>``
    ``compact``: ``kitchen white fridge left . <B>`` (the label already names the direction;
    articles and prepositions dropped), about a third of the tokens.
    ``distances``: compact, with each mentioned object's distance in whole metres after its
    side (``kitchen white fridge left 2 , doorway ahead <B>``), from the caption's structured
    mentions; captions without them (pixel captioners) read as ``compact``.
    ``matched``: distances, with each room and object that the instruction names followed by
    its landmark mark (``marks``, from ``landmark_marks``): ``kitchen lm1 white fridge left 2
    lmlast <B>``; the policy need not learn to find the instruction's words in each line.
    ``here``: the candidates as ``matched``; only the Stop line differs (``stop_line``).
    ``terse``: matched in about two thirds of the tokens: each room, colour and object name
    one token (``living_room``, ``dark_grey``, ``coffee_table``), no commas (each object ends
    with its metres), and ``into <room>`` only where the move leaves the room the view
    shows: ``living_room lm1 blue sofa ahead 4 white coffee_table ahead 2 doorway left
    bathroom <A>``.
    ``visited``: the line ends with the word ``visited`` (before the label): its move
    leads back to where the agent has already been (``visited_views``).
    ``turn``: the line ends with the word ``turn`` (before the label): at the first decision,
    the view lies in the direction of the instruction's opening turn (``start_turn``).
    """
    if style in ("distances", *MARKED) and _has_distances(c.caption):
        body = _distance_words(c.caption, marks if style in MARKED else None, style == "terse")
    elif style in ("compact", "distances", *MARKED):
        body = [w for w in words(c.caption.text) if w not in _FILLER]
    else:
        body = words(c.to_text(details=False))
    if visited:
        body = [*body, "visited"]
    if turn:
        body = [*body, "turn"]
    return f"{' '.join(body)} {LABELS[c.index]}"


def caption_words(caption) -> list[str]:
    """The words a caption may bring to a prompt, for a tokenizer's vocabulary: its text's,
    and its rooms', colours' and objects' names as the ``terse`` prompt's single tokens."""
    names = [caption.room, caption.beyond, caption.dest]
    for m in [*caption.mentions, *caption.more]:
        names += [m.colour, m.category]
    return words(caption.text) + [joined(n) for n in names if n]


_DOORWAY = re.compile(r"doorway (?:on the )?(left|right|ahead)")


def _has_distances(caption) -> bool:
    return bool(caption.room and caption.mentions) and all(
        m.distance is not None for m in caption.mentions
    )


@lru_cache(maxsize=65536)
def joined(name: str) -> str:
    """A multi-word name as one token: ``coffee table`` -> ``coffee_table``."""
    return "_".join(words(name))


def _mention_words(m, marks: dict[str, str], side: bool = True, terse: bool = False) -> list[str]:
    """``white fridge left 2 [lm<k>]``: an object, its side, whole metres, its mark
    (``terse``: its colour and its category one token each)."""
    sides = [m.side] if side and m.side else []
    name = [joined(x) for x in (m.colour, m.category) if x] if terse else words(m.name)
    return [
        *name,
        *sides,
        str(max(1, round(m.distance))),
        *_mark(marks, m.category, m.colour),
    ]


def _distance_words(caption, marks: dict[str, str] | None = None, terse: bool = False) -> list[str]:
    """The ``distances`` / ``matched`` (``terse``) words of a caption with structure."""
    marks = marks or {}
    sep = [] if terse else [","]

    def name(x: str) -> list[str]:
        return [joined(x)] if terse else words(x)

    out = name(caption.room) + _mark(marks, caption.room)
    for m in caption.mentions:
        out += [*_mention_words(m, marks, terse=terse), *sep]
    for m in caption.more:  # further objects: only those the instruction names
        if _mark(marks, m.category, m.colour):
            out += [*_mention_words(m, marks, terse=terse), *sep]
    door = _DOORWAY.search(caption.text.lower())
    if door:
        out += ["doorway", door.group(1)]
        if caption.beyond:  # the room seen through it
            out += name(caption.beyond) + _mark(marks, caption.beyond)
    elif out[-1] == ",":
        out.pop()
    # the room where this view's move ends (terse: only when it is not the view's room)
    if caption.dest and not (terse and caption.dest == caption.room):
        out += [*sep, "into", *name(caption.dest), *_mark(marks, caption.dest)]
    return out


def here_words(obs: TextObservation, marks: dict[str, str] | None = None) -> list[str]:
    """What surrounds the agent, from its candidates' captions: the room most of its views
    show, then the objects within ``NEAR`` metres in any view (nearest first, at most
    ``NEAR_MAX``), each with its whole metres and its landmark mark. ``[]`` when the
    captions carry no structure (pixel captioners)."""
    caps = [c.caption for c in obs.candidates if _has_distances(c.caption)]
    if not caps:
        return []
    marks = marks or {}
    room = _main_room(caps)
    near: dict[object, object] = {}
    for m in _near(caps, NEAR):
        key = m.instance_id if m.instance_id is not None else m.name
        if key not in near or m.distance < near[key].distance:
            near[key] = m
    out = words(room) + _mark(marks, room)
    for m in sorted(near.values(), key=lambda m: (m.distance, m.name))[:NEAR_MAX]:
        out += [",", *_mention_words(m, marks, side=False)]
    return out


def stop_line(obs: TextObservation, style: str = "langnav", marks=None) -> str:
    """Stop's line, closed by its label: ``stop .``, or in the ``here`` style what surrounds
    the agent (``stop here living room lm2 , black tv stand 1 lmlast <STOP>``), so that Stop
    is scored from its own line like any candidate."""
    here = here_words(obs, marks) if style == "here" else []
    return " ".join(["stop", "here", *here] if here else ["stop", "."]) + f" {STOP_LABEL}"


def step_text(
    obs: TextObservation, style: str = "langnav", marks: dict[str, str] | None = None
) -> str:
    """The ``<step>`` segment of one decision, ending with ``<ans>``."""
    parts = ["<step>"]
    for c in obs.candidates:
        parts.append(candidate_line(c, style, marks))
    parts.append(f"{stop_line(obs, style, marks)} <ans>")
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
    good: list[str] | None = None  # every label as good as ``label`` (None: ``label`` alone)
    regret: dict[str, float] | None = None  # each label's regret in metres (expert_judgement)
    distance: float | None = None  # geodesic metres to the goal (expert_judgement)
