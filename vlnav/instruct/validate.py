"""Validation of generated instructions and imagined trajectories.

Every output of a speaker is checked before it is kept; a failing one is regenerated (with
another seed and prompt) up to ``max_attempts`` times, and each failure is counted by its
reason:

``empty``, ``too_short`` / ``too_long`` (word bounds), ``repetitive`` / ``no_motion_verb``
(degenerate text, see :func:`degenerate`), ``no_landmark`` (names none of the
path's landmarks), ``hallucinated_object`` (names an object category that none of the
path's rooms holds: checked against the SceneSpec), ``wrong_colour`` (a colour + category
pair no object of the path's rooms has), ``hallucinated_room`` (a room type the path does not
pass through), ``duplicate`` (the same text, ignoring case and punctuation, was already
accepted), and for imagined trajectories the format reasons of
:class:`~vlnav.instruct.imagine.TrajectoryFormatError` plus ``ungrounded_object`` (the
instruction names an object that no view of its trajectory shows).
"""

from __future__ import annotations

import re

from vlnav.instruct.config import ValidateConfig
from vlnav.instruct.imagine import TextTrajectory, TrajectoryFormatError, parse_trajectory
from vlnav.instruct.lexicon import Lexicon
from vlnav.instruct.summary import PathSummary

_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_LABEL_RE = re.compile(r"^\s*(?:here is (?:the|an|your) instruction\s*:|instruction\s*:)\s*", re.I)


def clean_text(text: str) -> str:
    """A model's reply as an instruction: reasoning blocks, a leading label and wrapping
    quotes removed, whitespace collapsed."""
    text = _THINK_RE.sub(" ", text or "")
    text = _LABEL_RE.sub("", text.strip())
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text


MOTION_VERBS = frozenset(
    [
        "walk",
        "walking",
        "go",
        "going",
        "turn",
        "turning",
        "stop",
        "stopping",
        "wait",
        "waiting",
        "leave",
        "exit",
        "enter",
        "head",
        "take",
        "continue",
        "pass",
        "passing",
        "move",
        "step",
        "proceed",
        "keep",
        "follow",
        "cross",
        "climb",
        "face",
        "make",
        "hang",
        "spin",
        "veer",
        "stand",
        "come",
    ]
)


def degenerate(text: str) -> str | None:
    """``repetitive`` or ``no_motion_verb`` for text that cannot be an instruction, else None.

    Repetitive: one word is over 35 % of the words, or a word comes three times in a row
    (what a small or broken model writes); an instruction also needs a motion verb.
    """
    words = re.findall(r"[a-z']+", text.lower())
    if not words:
        return None
    top = max(words.count(w) for w in set(words))
    if (len(words) >= 6 and top / len(words) > 0.35) or any(
        a == b == c for a, b, c in zip(words, words[1:], words[2:])
    ):
        return "repetitive"
    if not MOTION_VERBS & set(words):
        return "no_motion_verb"
    return None


def word_count(text: str) -> int:
    return len(re.findall(r"[A-Za-z0-9']+", text))


def dedupe_key(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


class Validator:
    """Checks instructions against their path; remembers accepted texts for de-duplication.

    Example:
        >>> v = Validator(ValidateConfig(), Lexicon.default())
        >>> v.check("Walk past the red piano and stop.", summary)
        ['too_short', 'hallucinated_object']
    """

    def __init__(self, config: ValidateConfig | None = None, lexicon: Lexicon | None = None):
        self.cfg = config or ValidateConfig()
        self.lexicon = lexicon or Lexicon.default()
        self._seen: set[str] = set()

    def _length(self, text: str) -> list[str]:
        n = word_count(text)
        if n == 0:
            return ["empty"]
        if n < self.cfg.min_words:
            return ["too_short"]
        if n > self.cfg.max_words:
            return ["too_long"]
        return []

    def _duplicate(self, text: str) -> list[str]:
        return ["duplicate"] if self.cfg.dedupe and dedupe_key(text) in self._seen else []

    def check(self, text: str, summary: PathSummary) -> list[str]:
        """Reasons to reject ``text`` as an instruction for ``summary``'s path ([] = ok)."""
        reasons = self._length(text)
        if reasons == ["empty"]:
            return reasons
        if bad := degenerate(text):
            reasons.append(bad)
        lex = self.lexicon.with_categories(summary.room_categories)
        mentions = lex.mentions(text)
        present = set(summary.room_categories)
        landmark_cats = {lm.category for lm in summary.landmarks}
        objects = [m for m in mentions if m.kind == "object"]
        if self.cfg.require_landmark and not any(m.targets & landmark_cats for m in objects):
            reasons.append("no_landmark")
        if self.cfg.check_objects and any(not (m.targets & present) for m in objects):
            reasons.append("hallucinated_object")
        if self.cfg.check_colours:
            named = set(summary.room_objects)
            if any(
                m.colour
                and m.targets & present
                and not any(f"{m.colour} {t}" in named for t in m.targets)
                for m in objects
            ):
                reasons.append("wrong_colour")
        if self.cfg.check_rooms:
            rooms = set(summary.rooms)
            if any(not (m.targets & rooms) for m in mentions if m.kind == "room"):
                reasons.append("hallucinated_room")
        return reasons + self._duplicate(text)

    def check_imagined(
        self, text: str, summary: PathSummary | None = None
    ) -> tuple[TextTrajectory | None, list[str]]:
        """Parse and check an imagined trajectory; returns (trajectory or None, reasons).

        The instruction must name objects its views show; when the trajectory is of a real
        path (``summary`` given: the template speaker), it is checked against that path
        instead, as in instruction mode.
        """
        try:
            traj = parse_trajectory(text)
        except TrajectoryFormatError as e:
            return None, [e.reason]
        if len(traj.steps) > self.cfg.max_steps:
            return None, ["too_many_steps"]
        traj.instruction = clean_text(traj.instruction)
        if summary is not None:
            reasons = self.check(traj.instruction, summary)
            return (None if reasons else traj), reasons
        reasons = self._length(traj.instruction)
        if reasons == ["empty"]:
            return None, reasons
        if bad := degenerate(traj.instruction):
            reasons.append(bad)
        seen_cats: set[str] = set()
        for step in traj.steps:
            for c in step.candidates:
                for m in self.lexicon.mentions(c.description):
                    if m.kind == "object":
                        seen_cats |= m.targets
        objects = [m for m in self.lexicon.mentions(traj.instruction) if m.kind == "object"]
        if self.cfg.require_landmark and not any(m.targets & seen_cats for m in objects):
            reasons.append("no_landmark")
        if self.cfg.check_objects and any(not (m.targets & seen_cats) for m in objects):
            reasons.append("ungrounded_object")
        reasons += self._duplicate(traj.instruction)
        return (None if reasons else traj), reasons

    def accept(self, text: str) -> None:
        """Remember an accepted text (later duplicates of it are rejected)."""
        self._seen.add(dedupe_key(text))
