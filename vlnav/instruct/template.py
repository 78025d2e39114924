"""The built-in speaker: R2R-like instructions from phrase templates, offline and seeded.

Each event of a :class:`~vlnav.instruct.summary.PathSummary` has many phrasings (verbs,
synonyms of objects and rooms, landmark relations such as "at", "when you reach", "on your
left", ordinal doorways), details are dropped at random (a seeded "detail level"), and the
clauses are grouped into one to four sentences with varied connectives, so that a policy
cannot learn one fixed grammar. Compositions are drawn until one has 15 to 40 words.
Only the summary's rooms and landmarks are ever named. The same seed gives the same text.

Example:
    >>> TemplateSpeaker().describe(summary, seed=3)
    'Turn around and leave the bedroom. Take a left at the green plant, then enter the
    kitchen and stop next to the white fridge.'
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from vlnav.instruct.imagine import TextTrajectory
from vlnav.instruct.lexicon import Lexicon
from vlnav.instruct.speakers import OnDone, SpeakerReply, SpeakerRequest
from vlnav.instruct.summary import Landmark, PathEvent, PathSummary
from vlnav.instruct.validate import word_count

MIN_WORDS, MAX_WORDS = 15, 40
CONNECTIVES = (", then ", ", then ", ", then ", " and ", " and ", ", and then ", ", ", ", ")
ORDINALS = ("first", "second", "third")


class TemplateSpeaker:
    """Writes instructions from path summaries with seeded phrase templates (no model)."""

    name = "template"
    model = "template-v1"
    uses_prompts = False

    def __init__(self, model: str | None = None, config: Any = None) -> None:
        self.min_words, self.max_words = MIN_WORDS, MAX_WORDS

    def params(self, mode: str) -> dict[str, Any]:
        return {"model": self.model}

    def generate(
        self, requests: Sequence[SpeakerRequest], on_done: OnDone | None = None
    ) -> list[SpeakerReply]:
        out = []
        for i, r in enumerate(requests):
            if r.summary is None:
                raise ValueError("the template speaker needs the path summary of each request")
            text = self.describe(r.summary, r.seed)
            if r.mode == "imagine":
                if r.trajectory is None:
                    raise ValueError("imagine mode: the template speaker needs the trajectory")
                text = TextTrajectory(instruction=text, steps=r.trajectory.steps).to_prompt()
            reply = SpeakerReply(text)
            out.append(reply)
            if on_done:
                on_done(i, reply)
        return out

    def close(self) -> None:
        pass

    def describe(self, summary: PathSummary, seed: int) -> str:
        """One instruction for ``summary``; deterministic in ``seed``."""
        rng = random.Random(seed)
        best, best_gap = "", None
        detail, terse = rng.choice((0.35, 0.55, 0.75, 0.95)), False
        for _ in range(16):
            text = _Composer(summary, rng, detail, terse).compose()
            n = word_count(text)
            if self.min_words <= n <= self.max_words:
                return text
            gap = self.min_words - n if n < self.min_words else n - self.max_words
            if best_gap is None or gap < best_gap:
                best, best_gap = text, gap
            if n > self.max_words:  # a long path: fewer details, then fewer clauses
                detail, terse = max(0.0, detail - 0.3), detail <= 0.35
            else:
                detail = min(1.0, detail + 0.3)
        return best


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class _Composer:
    """One composition: clauses for the events, grouped into sentences."""

    def __init__(
        self, summary: PathSummary, rng: random.Random, detail: float, terse: bool = False
    ) -> None:
        self.s, self.rng, self.detail, self.terse = summary, rng, detail, terse
        self.used_landmark = False
        self.doors = [e for e in summary.events if e.kind == "door"]

    # ------------------------------------------------------------------ words
    def pick(self, options: Sequence[str]) -> str:
        return self.rng.choice(list(options))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def room(self, room_type: str) -> str:
        names = Lexicon.room_names(room_type)
        return "the " + (names[0] if len(names) == 1 or self.chance(0.8) else self.pick(names[1:]))

    def thing(self, lm: Landmark) -> str:
        self.used_landmark = True
        names = Lexicon.synonyms(lm.category)
        noun = names[0] if len(names) == 1 or self.chance(0.75) else self.pick(names[1:])
        return f"the {lm.colour} {noun}" if self.chance(0.7) else f"the {noun}"

    def landmark(self, e: PathEvent, p: float) -> Landmark | None:
        if e.landmarks and self.chance(p):
            return e.landmarks[0] if self.chance(0.7) else self.pick(e.landmarks)
        return None

    # ---------------------------------------------------------------- clauses
    def start(self, e: PathEvent, exit_door: PathEvent | None) -> list[str]:
        turn = {
            "around": (
                "turn around",
                "turn all the way around",
                "spin around",
                "turn to face the other way",
            ),
            "left": ("turn left", "turn to your left", "face left", "make a left"),
            "right": ("turn right", "turn to your right", "face right", "make a right"),
        }.get(e.direction or "", ())
        r = self.room(e.room)
        lm = self.landmark(e, 0.5 * self.detail)
        if exit_door is not None:
            walk = [
                f"walk out of {r}",
                f"leave {r}",
                f"exit {r}",
                f"head out of {r}",
                f"go out of {r}",
            ]
            if lm is not None:
                t = self.thing(lm)
                walk = [f"walk past {t} and out of {r}", f"leave {r}, passing {t}"]
        else:
            walk = ["walk forward", "go straight", f"walk across {r}", "walk straight ahead"]
            if lm is not None:
                t = self.thing(lm)
                walk = (
                    [f"walk past {t}", f"walk towards {t}"]
                    if lm.side == "ahead"
                    else [f"walk past {t}"]
                )
            elif not turn or not self.chance(self.detail):
                walk = []
        if turn and walk:
            return (
                [f"{self.pick(turn)} and {self.pick(walk)}"]
                if self.chance(0.6)
                else [self.pick(turn), self.pick(walk)]
            )
        return [self.pick(turn or walk)] if (turn or walk) else []

    def door(self, e: PathEvent) -> str:
        b, a = self.room(e.room), self.room(e.from_room or "")
        options = [
            f"go through the doorway into {b}",
            f"walk through the door into {b}",
            f"enter {b}",
            f"walk into {b}",
            f"head into {b}",
            f"step into {b}",
            f"continue into {b}",
            f"exit {a} into {b}",
            f"leave {a} and enter {b}",
        ]
        n = self.doors.index(e)
        if len(self.doors) >= 2 and n < len(ORDINALS) and self.chance(0.3):
            options = [
                f"go through the {ORDINALS[n]} doorway into {b}",
                f"take the {ORDINALS[n]} door into {b}",
            ]
        text = self.pick(options)
        lm = self.landmark(e, 0.5 * self.detail)
        if lm is not None:
            t = self.thing(lm)
            rel = {"ahead": "in front of you", "left": "on your left", "right": "on your right"}
            if lm.side in rel:
                text += self.pick(
                    [f" with {t} {rel[lm.side]}", f", where you will see {t} {rel[lm.side]}"]
                )
        if e.room == "hallway" and self.chance(0.3):
            text += self.pick(
                [" and walk down the hallway", " and follow the hallway", " and walk along it"]
            )
        return text

    def turn(self, e: PathEvent, again: bool) -> str:
        d = e.direction
        lm = self.landmark(e, self.detail)
        if d == "around":
            if lm is not None:
                t = self.thing(lm)
                return self.pick([f"turn around at {t}", f"turn around when you reach {t}"])
            return self.pick(["turn around", "make a u-turn", "turn back around"])
        if lm is not None:
            t = self.thing(lm)
            options = [
                f"turn {d} at {t}",
                f"turn {d} when you reach {t}",
                f"at {t}, turn {d}",
                f"make a {d} by {t}",
                f"turn {d} once you get to {t}",
                f"take a {d} near {t}",
            ]
            if lm.side == "ahead":
                options.append(f"walk towards {t} and turn {d}")
            return self.pick(options)
        options = [
            f"turn {d}",
            f"make a {d}",
            f"take a {d}",
            f"hang a {d}",
            f"go {d}",
            f"make a {d} turn",
        ]
        if again:
            options += [f"turn {d} again", f"make another {d}"]
        if self.chance(0.3):
            options = [f"turn {d} in {self.room(e.room)}"]
        return self.pick(options)

    def straight(self, nxt: PathEvent, room: str) -> str | None:
        if self.terse or not self.chance(0.3 * self.detail + 0.1):
            return None
        side = [lm for lm in nxt.landmarks if lm.side in ("left", "right")]
        if side and self.chance(self.detail):
            return f"walk past {self.thing(side[0])} on your {side[0].side}"
        options = [
            "walk straight",
            "continue straight",
            "keep going straight",
            "go straight ahead",
            "walk forward",
        ]
        if room == "hallway":
            options += ["walk down the hallway", "follow the hallway"]
        return self.pick(options)

    def goal(self, e: PathEvent, force: bool) -> str:
        lms = e.landmarks
        r = self.room(e.room)
        if lms and (force or self.chance(0.9)):
            a = lms[0]
            if len(lms) >= 2 and {a.side, lms[1].side} == {"left", "right"} and self.chance(0.3):
                return f"stop between {self.thing(a)} and {self.thing(lms[1])}"
            if a.distance < 0.8:
                rels = ["next to", "beside", "by", "right by"]
            elif a.distance < 1.6:
                rels = ["next to", "near", "by", "close to"]
            else:
                rels = ["near", "close to"]
            if a.side == "ahead":
                rels.append("in front of")
            rel, t = self.pick(rels), self.thing(a)
            return self.pick(
                [
                    f"stop {rel} {t}",
                    f"wait {rel} {t}",
                    f"stop once you are {rel} {t}",
                    f"stop when you reach {t}",
                    f"walk up to {t} and stop",
                    f"walk towards {t} and wait there",
                    f"go to {t} and stop",
                    f"stop in {r} {rel} {t}",
                    f"come to a stop {rel} {t}",
                    f"you are done when you reach {t}",
                ]
            )
        return self.pick([f"stop in {r}", f"wait in {r}", f"stop once you are in {r}"])

    # -------------------------------------------------------------- sentences
    def compose(self) -> str:
        events = self.s.events
        start, goal, middle = events[0], events[-1], list(events[1:-1])
        exit_door = middle[0] if middle and middle[0].kind == "door" else None
        clauses = self.start(start, exit_door)
        if exit_door is not None:  # the start clause walks out through it
            middle = middle[1:]
        last_turn = None
        room = start.room
        doors = [e for e in middle if e.kind == "door"]
        passed = False
        for i, e in enumerate(middle):
            if e.kind == "door" and self.terse and len(doors) >= 2 and e is not doors[-1]:
                if not passed:  # many rooms on the way: name them in one clause
                    rooms = [d.room for d in doors[:-1]]
                    rooms = [self.room(r) for k, r in enumerate(rooms) if r not in rooms[:k]]
                    verb = self.pick(["walk through", "go through", "pass through", "cross"])
                    clauses.append(f"{verb} {_join(rooms)}")
                    passed = True
                room = e.room
                continue
            if e.kind == "door":
                clauses.append(self.door(e))
                room = e.room
                last_turn = None
            elif e.kind == "turn":
                near_door = any(
                    d.kind == "door" and abs(d.distance - e.distance) < 1.5 for d in middle
                )
                if self.terse and near_door:
                    continue  # going through the door implies this turn
                clauses.append(self.turn(e, again=last_turn == e.direction))
                last_turn = e.direction
            nxt = middle[i + 1] if i + 1 < len(middle) else goal
            if clauses and (s := self.straight(nxt, room)):
                clauses.append(s)
        clauses.append(self.goal(goal, force=not self.used_landmark))
        return self.sentences([c for c in clauses if c])

    def sentences(self, clauses: list[str]) -> str:
        n = len(clauses)
        k = self.rng.randint(1, min(4, n))
        cuts = sorted(self.rng.sample(range(1, n), k - 1)) if k > 1 else []
        groups = [clauses[a:b] for a, b in zip([0, *cuts], [*cuts, n])]
        out = []
        for gi, g in enumerate(groups):
            text = g[0]
            for c in g[1:]:
                text += self.pick(CONNECTIVES) + c
            if gi > 0 and self.chance(0.35):
                last = gi == len(groups) - 1
                text = (
                    self.pick(
                        ["finally, ", "then "]
                        if last
                        else ["then ", "next, ", "after that, ", "from there, "]
                    )
                    + text
                )
            out.append(text[0].upper() + text[1:] + ".")
        return " ".join(out)
