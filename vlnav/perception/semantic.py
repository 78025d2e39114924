"""The ``semantic`` captioner: what is in view, read from the instance-id and depth sensors.

Deterministic and exact: the room type comes from the floor that covers most of the view,
objects are ranked by visible area and nearness, each with its colour, rough distance and
side (left / ahead / right, by thirds of the image). Output is capped (``max_objects``) so a
12-view observation stays compact for a small language model. With ``beyond=True`` a doorway
also names the room seen through it (the largest floor of another room type in view): "a
doorway on the left to a kitchen", as a person describing the view would. With
``dest=True`` and a view whose move length is known (``View.reach``, set by the candidate
observer), the caption also names the room type of the floor where that move ends: the
floor seen in the middle of the view at the waypoint's depth ("Walking ahead leads into a
kitchen."). ``more=k`` keeps the next k ranked objects as structured mentions outside the
sentence (``Caption.more``), for prompts that show only the ones an instruction names.
"""

from __future__ import annotations

import numpy as np

from vlnav.perception.base import Caption, Mention, View

STRUCTURE = {"floor", "ceiling", "wall", "doorway"}


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def side_of(col: float, width: int) -> str:
    if col < width / 3:
        return "left"
    if col > 2 * width / 3:
        return "right"
    return "ahead"


def _where(m: Mention) -> str:
    return {"left": "on the left", "right": "on the right", "ahead": "ahead"}[m.side or "ahead"]


class SemanticCaptioner:
    name = "semantic"
    needs = ("semantic", "depth")
    cheap_to_build = True  # configs build it when read, to check its options

    def __init__(
        self,
        max_objects: int = 3,
        min_area: float = 0.003,
        max_distance: float = 8.0,
        beyond: bool = False,
        dest: bool = False,
        more: int = 0,
        dest_window: float = 0.4,
    ):
        from vlnav.config import ConfigError, check_range

        for key, value, lo, hi in (
            ("max_objects", max_objects, 0, 20),
            ("min_area", min_area, 0.0, 1.0),
            ("max_distance", max_distance, 0.1, 1000.0),
            ("more", more, 0, 20),
            ("dest_window", dest_window, 0.01, 1.0),
        ):
            check_range(key, value, lo, hi)
        for key, value in (("max_objects", max_objects), ("more", more)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{key}={value!r} should be a whole number")
        self.max_objects = max_objects
        self.min_area = min_area
        self.max_distance = max_distance
        self.beyond = beyond
        self.dest = dest
        self.more = more
        self.dest_window = dest_window

    @property
    def identity(self) -> str:
        ident = f"semantic-v1-k{self.max_objects}-a{self.min_area}-d{self.max_distance}"
        ident += "-beyond" if self.beyond else ""
        ident += f"-dest{self.dest_window}" if self.dest else ""
        return ident + (f"-more{self.more}" if self.more else "")

    def caption(self, views: list[View]) -> list[Caption]:
        return [self._one(v) for v in views]

    def _one(self, view: View) -> Caption:
        if view.semantic is None or view.depth is None or view.objects is None:
            raise ValueError("the semantic captioner needs semantic, depth and objects")
        sem, depth, objects = view.semantic, view.depth, view.objects
        h, w = sem.shape
        ids, counts = np.unique(sem, return_counts=True)
        total = float(h * w)
        floor_area: dict[str, float] = {}
        floor_room: dict[int, str] = {}
        doorway: Mention | None = None
        cands: list[tuple[float, Mention]] = []
        for iid, cnt in zip(ids.tolist(), counts.tolist()):
            info = objects.get(iid)
            if iid == 0 or info is None:
                continue
            cat = info["category"]
            frac = cnt / total
            if cat == "floor":
                rt = info.get("room_type") or "room"
                floor_area[rt] = floor_area.get(rt, 0.0) + frac
                floor_room[iid] = rt
                continue
            if cat in ("wall", "ceiling") or frac < self.min_area:
                continue
            mask = sem == iid
            d = float(np.median(depth[mask]))
            if d > self.max_distance:
                continue
            col = float(np.nonzero(mask.any(axis=0))[0].mean())
            m = Mention(cat, info.get("colour"), round(d, 1), side_of(col, w), iid)
            if cat == "doorway":
                if doorway is None or d < (doorway.distance or 1e9):
                    doorway = m
                continue
            cands.append((frac / (1.0 + 0.5 * d), m))
        cands.sort(key=lambda t: (-t[0], t[1].instance_id))
        mentions = [m for _, m in cands[: self.max_objects]]
        more = [m for _, m in cands[self.max_objects : self.max_objects + self.more]]
        room = max(floor_area, key=lambda k: floor_area[k]) if floor_area else None
        beyond = None
        if self.beyond and doorway is not None:
            others = {k: a for k, a in floor_area.items() if k != room and a >= self.min_area}
            beyond = max(others, key=lambda k: others[k]) if others else None
        dest = None
        if self.dest and view.reach is not None and floor_room:
            dest = self._dest_room(sem, depth, floor_room, view.reach)
        text = self._sentence(room, mentions, doorway, depth, beyond)
        if dest:
            text += f" Walking ahead leads into {article(dest)} {dest}."
        return Caption(text, mentions, room, doorway is not None, beyond, dest, more)

    def _dest_room(
        self, sem: np.ndarray, depth: np.ndarray, floor_room: dict[int, str], reach: float
    ) -> str | None:
        """The room type of the floor in the middle third of the view at depth ``reach``
        (planar depth of a level camera: the floor point ``reach`` metres ahead), the most
        common one there; None when that floor is hidden."""
        w = sem.shape[1]
        for lo, hi in ((w // 3, w - w // 3), (0, w)):  # the middle third, else the whole view
            part_sem, part_depth = sem[:, lo:hi], depth[:, lo:hi]
            near = np.abs(part_depth - reach) <= self.dest_window
            ids, counts = np.unique(part_sem[near], return_counts=True)
            votes: dict[str, int] = {}
            for iid, cnt in zip(ids.tolist(), counts.tolist()):
                if iid in floor_room:
                    votes[floor_room[iid]] = votes.get(floor_room[iid], 0) + cnt
            if votes:
                return max(votes, key=lambda k: (votes[k], k))
        return None

    def _sentence(self, room, mentions, doorway, depth, beyond=None) -> str:
        if room is None:
            near = float(np.median(depth[depth > 0])) if (depth > 0).any() else 0.0
            head = f"A wall {near:.0f} m ahead" if near >= 1.5 else "A wall close ahead"
        else:
            head = f"{article(room).capitalize()} {room}"
        parts = [f"{article(m.name)} {m.name} {_where(m)}" for m in mentions]
        text = head
        if parts:
            text += " with " + (
                ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
            )
        if doorway is not None:
            text += f", a doorway {_where(doorway)}"
            if beyond:
                text += f" to {article(beyond)} {beyond}"
        return text + "."
