"""Pictures of houses and episodes: a top-down map, replay frames, video, PNG and SVG output.

Everything is drawn with OpenCV on RGB ``uint8`` arrays. The map is the floor plan seen
from above with -z up, so an agent at heading 0 (looking along -z) faces the top of the
image and a positive (left) turn rotates its arrow counter-clockwise.

Example:
    >>> m = TopDownMap(spec, grid)
    >>> img = m.image()
    >>> m.draw_path(img, episode.reference_path, REFERENCE_COLOUR)
    >>> m.draw_agent(img, [1.0, 0.0, 2.0], heading=0.0)
    >>> m.draw_goal(img, episode.goal_position)
    >>> frames = episode_frames(sim, episode, actions=[1, 1, 2, 1, 0])
    >>> write_videos(frames, ["runs/viz/episode_1.webm", "runs/viz/episode_1.mp4"])
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vlnav import VlnavError
from vlnav.scenes.spec import SceneSpec
from vlnav.sim.base import ACTION_NAMES

Colour = tuple[int, int, int]
PanelLines = Sequence[tuple[str, bool]]  # (text, highlighted) per line of the candidate panel

BACKGROUND: Colour = (250, 250, 250)
WALL_COLOUR: Colour = (55, 55, 60)
DOORWAY_COLOUR: Colour = (205, 190, 165)
LABEL_COLOUR: Colour = (70, 70, 75)
NAVIGABLE_TINT: Colour = (255, 255, 255)  # a tint: navigable floor is lighter
NAVIGABLE_ALPHA = 0.45
REFERENCE_COLOUR: Colour = (40, 170, 60)
AGENT_PATH_COLOUR: Colour = (40, 90, 220)
AGENT_COLOUR: Colour = (20, 40, 150)
GOAL_COLOUR: Colour = (215, 40, 40)
DEFAULT_ROOM_COLOUR: Colour = (232, 230, 224)

# light floor colours per room type; other types get a stable pastel from their name
ROOM_COLOURS: dict[str, Colour] = {
    "bedroom": (224, 216, 242),
    "kitchen": (250, 236, 200),
    "living_room": (214, 236, 208),
    "bathroom": (204, 229, 244),
    "dining_room": (246, 222, 204),
    "hallway": (234, 232, 224),
    "corridor": (234, 232, 224),
    "office": (238, 229, 212),
    "study": (238, 229, 212),
    "laundry_room": (218, 238, 236),
    "closet": (236, 224, 236),
    "garage": (226, 226, 226),
    "entryway": (240, 230, 220),
}

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def room_colour(room_type: str) -> Colour:
    """The floor colour of a room type (a deterministic pastel for unknown types)."""
    if room_type in ROOM_COLOURS:
        return ROOM_COLOURS[room_type]
    h = zlib.crc32(room_type.encode())
    return tuple(200 + (h >> s) % 48 for s in (0, 8, 16))  # type: ignore[return-value]


def _xz(p: Sequence[float]) -> tuple[float, float]:
    """[x, y, z] or [x, z] -> (x, z)."""
    return (float(p[0]), float(p[2])) if len(p) >= 3 else (float(p[0]), float(p[1]))


class TopDownMap:
    """A rendered floor plan of one house, with helpers that draw on copies of it.

    Rooms are filled with a light colour per room type and labelled at their centre,
    walls are dark (door gaps show as a light threshold), objects are filled rectangles
    in their own rgb with a thin darker outline, and, when a :class:`NavGrid` is given,
    the navigable area is tinted.

    Args:
        spec: the house.
        grid: optional navigation grid whose free cells are tinted.
        px_per_m: map scale in pixels per metre.
        margin: blank border around the house, in pixels.

    Example:
        >>> m = TopDownMap(spec, grid, px_per_m=40)
        >>> u, v = m.to_px(1.0, 2.0)
        >>> img = m.draw_agent(m.image(), [1.0, 0.0, 2.0], heading=math.pi / 2)  # faces left
    """

    def __init__(
        self, spec: SceneSpec, grid: Any = None, px_per_m: float = 40.0, margin: int = 16
    ) -> None:
        if px_per_m <= 0:
            raise VlnavError(f"TopDownMap: px_per_m must be > 0, got {px_per_m}")
        self.spec = spec
        self.grid = grid
        self.px_per_m = float(px_per_m)
        self.margin = int(margin)
        xmin, zmin, xmax, zmax = spec.bounds
        self._x0, self._z0 = xmin, zmin
        self.width = int(math.ceil((xmax - xmin) * self.px_per_m - 1e-6)) + 2 * self.margin
        self.height = int(math.ceil((zmax - zmin) * self.px_per_m - 1e-6)) + 2 * self.margin
        self._base = self._render()

    @classmethod
    def fit(
        cls, spec: SceneSpec, grid: Any = None, height: int = 256, margin: int = 8
    ) -> TopDownMap:
        """A map whose image is about ``height`` pixels tall (the scale follows)."""
        _, zmin, _, zmax = spec.bounds
        px_per_m = max(1.0, (height - 2 * margin) / max(zmax - zmin, 1e-6))
        return cls(spec, grid, px_per_m=px_per_m, margin=margin)

    # ------------------------------------------------------------ coordinates
    def to_px(self, x: float, z: float) -> tuple[int, int]:
        """World (x, z) -> image (u, v): x grows to the right, z grows downward."""
        u = self.margin + (x - self._x0) * self.px_per_m
        v = self.margin + (z - self._z0) * self.px_per_m
        return int(round(u)), int(round(v))

    def _px(self, p: Sequence[float]) -> tuple[int, int]:
        return self.to_px(*_xz(p))

    def _len(self, metres: float, minimum: int = 1) -> int:
        return max(minimum, int(round(metres * self.px_per_m)))

    # ------------------------------------------------------------ base map
    def image(self) -> np.ndarray:
        """A copy of the base map, (H, W, 3) uint8 RGB."""
        return self._base.copy()

    def _render(self) -> np.ndarray:
        spec = self.spec
        img = np.full((self.height, self.width, 3), BACKGROUND, dtype=np.uint8)
        for room in spec.rooms:
            pts = np.array([self._px(p) for p in room.polygon], dtype=np.int32)
            cv2.fillPoly(img, [pts], room_colour(room.type))
        t = spec.wall_thickness / 2
        for d in spec.doors:
            cx, cz = d.center
            h = d.width / 2
            if d.axis == "x":
                a, b = self.to_px(cx - h, cz - t), self.to_px(cx + h, cz + t)
            else:
                a, b = self.to_px(cx - t, cz - h), self.to_px(cx + t, cz + h)
            cv2.rectangle(img, a, b, DOORWAY_COLOUR, -1)
        if self.grid is not None:
            self._tint_navigable(img)
        for o in sorted(spec.objects, key=lambda o: (o.bbox_min[1], o.bbox_max[1])):
            a = self.to_px(o.bbox_min[0], o.bbox_min[2])
            b = self.to_px(o.bbox_max[0], o.bbox_max[2])
            rgb = tuple(int(c) for c in o.rgb[:3])
            cv2.rectangle(img, a, b, rgb, -1)
            cv2.rectangle(img, a, b, tuple(int(c * 0.55) for c in rgb), 1)
        for w in spec.walls:
            wt = w.thickness / 2
            (ax, az), (bx, bz) = w.start, w.end
            a = self.to_px(min(ax, bx) - wt, min(az, bz) - wt)
            b = self.to_px(max(ax, bx) + wt, max(az, bz) + wt)
            cv2.rectangle(img, a, b, WALL_COLOUR, -1)
        for room in spec.rooms:
            self._label_room(img, room)
        return img

    def _tint_navigable(self, img: np.ndarray) -> None:
        g = self.grid
        gx0, gz0 = g.origin
        u = np.arange(self.width)
        v = np.arange(self.height)
        x = self._x0 + (u + 0.5 - self.margin) / self.px_per_m
        z = self._z0 + (v + 0.5 - self.margin) / self.px_per_m
        j = np.floor((x - gx0) / g.cell).astype(int)
        i = np.floor((z - gz0) / g.cell).astype(int)
        nz, nx = g.free.shape
        ok_j, ok_i = (j >= 0) & (j < nx), (i >= 0) & (i < nz)
        mask = np.zeros((self.height, self.width), dtype=bool)
        mask[np.ix_(ok_i, ok_j)] = g.free[np.ix_(i[ok_i], j[ok_j])]
        tint = np.array(NAVIGABLE_TINT, dtype=np.float32)
        img[mask] = (img[mask] * (1 - NAVIGABLE_ALPHA) + tint * NAVIGABLE_ALPHA).astype(np.uint8)

    def _label_room(self, img: np.ndarray, room: Any) -> None:
        scale = min(0.5, max(0.3, self.px_per_m / 100))
        text = room.type.replace("_", " ")
        x0, z0, x1, z1 = room.bounds
        room_w = (x1 - x0) * self.px_per_m - 4
        (tw, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
        lines = text.split() if tw > room_w and " " in text else [text]
        sizes = [cv2.getTextSize(s, _FONT, scale, 1)[0] for s in lines]
        line_h = max(h for _, h in sizes) + 4
        cu, cv = self._px(room.center)
        top = cv - (line_h * len(lines)) // 2
        for k, (s, (w, h)) in enumerate(zip(lines, sizes)):
            org = (cu - w // 2, top + k * line_h + h)
            _put_text_halo(img, s, org, scale, LABEL_COLOUR)

    # ------------------------------------------------------------ overlays
    def draw_path(
        self,
        img: np.ndarray,
        points: Sequence[Sequence[float]],
        color: Colour = REFERENCE_COLOUR,
        thickness: int = 2,
    ) -> np.ndarray:
        """Draw a polyline through ``points`` ([x, y, z] or [x, z]) on ``img`` in place."""
        if len(points) == 0:
            return img
        pts = np.array([self._px(p) for p in points], dtype=np.int32)
        if len(pts) == 1:
            cv2.circle(img, tuple(int(c) for c in pts[0]), thickness, color, -1, cv2.LINE_AA)
        else:
            cv2.polylines(img, [pts], False, color, thickness, cv2.LINE_AA)
        return img

    def draw_agent(
        self,
        img: np.ndarray,
        position: Sequence[float],
        heading: float,
        color: Colour = AGENT_COLOUR,
        radius_m: float = 0.2,
        arrow_m: float | None = None,
    ) -> np.ndarray:
        """Draw the agent as a disc with an arrow along its heading, in place.

        Heading 0 points up (-z); +pi/2 points left (-x). The arrow is ``arrow_m`` metres
        long from the disc's centre (default 2.2 radii, so its head sticks out).
        """
        c = self._px(position)
        r = self._len(radius_m, minimum=3)
        length = self._len(arrow_m, minimum=r + 3) if arrow_m is not None else int(2.2 * r)
        # the forward direction (-sin h, -cos h) in (x, z) is the same in (u, v)
        tip = (
            int(round(c[0] - math.sin(heading) * length)),
            int(round(c[1] - math.cos(heading) * length)),
        )
        cv2.circle(img, c, r + 1, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(img, c, r, color, -1, cv2.LINE_AA)
        cv2.arrowedLine(img, c, tip, color, max(2, r // 3), cv2.LINE_AA, tipLength=0.45)
        return img

    def draw_goal(
        self,
        img: np.ndarray,
        goal: Sequence[float],
        radius_m: float = 3.0,
        color: Colour = GOAL_COLOUR,
    ) -> np.ndarray:
        """Draw the goal marker and its success-radius circle (lightly filled), in place."""
        c = self._px(goal)
        r = self._len(radius_m)
        overlay = img.copy()
        cv2.circle(overlay, c, r, color, -1, cv2.LINE_AA)
        cv2.addWeighted(overlay, 0.12, img, 0.88, 0, dst=img)
        cv2.circle(img, c, r, color, 1, cv2.LINE_AA)
        m = self._len(0.15, minimum=4)
        cv2.circle(img, c, m + 1, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(img, c, m, color, -1, cv2.LINE_AA)
        return img


def _put_text_halo(
    img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: Colour
) -> None:
    """Text with a soft light halo so it stays readable over any floor or object."""
    mask = np.zeros(img.shape[:2], dtype=np.uint8)
    cv2.putText(mask, text, org, _FONT, scale, 255, 1, cv2.LINE_AA)
    halo = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=1) > 0
    img[halo] = (img[halo] * 0.35 + 255 * 0.65).astype(np.uint8)
    cv2.putText(img, text, org, _FONT, scale, color, 1, cv2.LINE_AA)


# ---------------------------------------------------------------- episode replay
def _wrap_text(text: str, width: int, scale: float) -> list[str]:
    """Greedy word wrap so that every line fits in ``width`` pixels."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        cand = f"{line} {word}" if line else word
        if line and cv2.getTextSize(cand, _FONT, scale, 1)[0][0] > width:
            lines.append(line)
            line = word
        else:
            line = cand
    if line:
        lines.append(line)
    return lines or [""]


def _caption(lines: list[str], status: str, width: int, scale: float) -> np.ndarray:
    (_, th), base = cv2.getTextSize("Ag", _FONT, scale, 1)
    line_h = th + base + 4
    pad = 6
    strip = np.full((pad * 2 + line_h * (len(lines) + 1), width, 3), 255, dtype=np.uint8)
    for k, s in enumerate(lines):
        y = pad + k * line_h + th
        cv2.putText(strip, s, (pad, y), _FONT, scale, (30, 30, 30), 1, cv2.LINE_AA)
    y = pad + len(lines) * line_h + th
    cv2.putText(strip, status, (pad, y), _FONT, scale, (90, 90, 160), 1, cv2.LINE_AA)
    return strip


PANEL_HIGHLIGHT: Colour = (255, 236, 160)  # the chosen candidate's background


def _fit(text: str, width: int, scale: float) -> str:
    """``text`` cut (with "...") to fit in ``width`` pixels."""
    if cv2.getTextSize(text, _FONT, scale, 1)[0][0] <= width:
        return text
    while text and cv2.getTextSize(text + "...", _FONT, scale, 1)[0][0] > width:
        text = text[:-1]
    return text.rstrip() + "..."


def candidate_panel(
    title: str, lines: PanelLines, width: int, height: int, scale: float = 0.38
) -> np.ndarray:
    """A (height, width, 3) panel listing the candidates of a decision, one entry each.

    Each entry (``"30 degree left: A kitchen with ..."``) wraps onto two lines while all
    entries fit, otherwise it is cut to one line; highlighted entries (the candidate that
    was chosen) get a coloured background.
    """
    panel = np.full((height, width, 3), 255, dtype=np.uint8)
    (_, th), base = cv2.getTextSize("Ag", _FONT, scale, 1)
    line_h, pad = th + base + 3, 6
    inner = width - 2 * pad
    room = max(1, (height - 2 * pad) // line_h - 1)  # lines left under the title
    wrapped = [_wrap_text(t, inner - 10, scale) for t, _ in lines]
    per_entry = 2 if sum(min(2, len(w)) for w in wrapped) <= room else 1
    y = pad + th
    cv2.putText(panel, title, (pad, y), _FONT, scale, (90, 90, 160), 1, cv2.LINE_AA)
    y += line_h
    for (_, chosen), wr in zip(lines, wrapped):
        rows = wr[:per_entry]
        if len(wr) > per_entry:
            rows[-1] = _fit(rows[-1] + " " + " ".join(wr[per_entry:]), inner - 10, scale)
        if y + line_h * (len(rows) - 1) > height - pad:
            break
        if chosen:
            top = y - th - 2
            cv2.rectangle(
                panel, (2, top), (width - 3, top + line_h * len(rows) + 1), PANEL_HIGHLIGHT, -1
            )
        for k, row in enumerate(rows):
            indent = 0 if k == 0 else 10
            colour = (20, 20, 20) if chosen else (60, 60, 60)
            cv2.putText(panel, row, (pad + indent, y), _FONT, scale, colour, 1, cv2.LINE_AA)
            y += line_h
    cv2.line(panel, (0, 0), (0, height - 1), (200, 200, 200), 1)
    return panel


def _ego_rgb(sim: Any, obs: dict[str, Any], size: int) -> np.ndarray:
    rgb = obs.get("rgb") if obs else None
    if rgb is None:
        try:  # a blind simulator (no sensors at reset/step) can still render on request
            rgb = sim.observe(sensors=("rgb",)).get("rgb")
        except TypeError:  # this backend's observe() takes no sensor list: a blank panel
            rgb = None
    if rgb is None:
        panel = np.full((size, size, 3), 40, dtype=np.uint8)
        cv2.putText(panel, "no rgb", (8, size // 2), _FONT, 0.5, (200, 200, 200), 1, cv2.LINE_AA)
        return panel
    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3], dtype=np.uint8)
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def _distance(sim: Any, position: Sequence[float], goal: Sequence[float]) -> float | None:
    try:
        d = float(sim.geodesic_distance(position, goal))
    except (AttributeError, NotImplementedError, ValueError):  # no geodesic: not shown
        return None
    return d if math.isfinite(d) else None


def episode_frames(
    sim: Any,
    episode: Any,
    actions: Sequence[int],
    map: TopDownMap | None = None,
    instruction: str | None = None,
    size: int = 256,
    notes: Sequence[str | None] | None = None,
    candidates: Callable[[int, Any], PanelLines | None] | None = None,
    panel_width: int | None = None,
) -> Iterator[np.ndarray]:
    """Replay ``actions`` from the episode's start and yield one frame per step.

    Frame 0 shows the start; frame ``t`` shows the state after ``actions[t - 1]``, so
    there are ``len(actions) + 1`` frames, fewer when a STOP comes early (the replay ends
    with the STOP's frame). Each frame is the egocentric RGB (``size`` x ``size``) beside
    the top-down map (scaled to the same height) with the reference path (green), the
    agent's path so far (blue), the agent and the goal, over a caption with the wrapped
    instruction and the step number, action and geodesic distance to the goal.

    Args:
        sim: a simulator (the ``Simulator`` protocol); without ``map`` it must have
            ``.spec`` (and optionally ``.grid``), as :class:`BuiltinSimulator` does.
        episode: an :class:`~vlnav.episodes.Episode` (start, goal, reference path, text).
        actions: VLN-CE actions (0 STOP, 1 MOVE_FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT).
        map: a prepared :class:`TopDownMap`; by default one is fitted to ``size``.
        instruction: text shown in the caption (default: the episode's instruction).
        size: height of the frame's image row in pixels.
        notes: optional text per frame (e.g. the candidate the policy chose), shown on two
            lines under the instruction; frames keep one size whether or not they have a note.
        candidates: optional ``f(t, sim) -> [(text, highlighted), ...] | None``, called for
            every frame ``t`` with the simulator at that frame's pose; the lines it returns
            (the candidate views' captions, the chosen one highlighted) are shown in a panel
            right of the map until it returns new ones (None keeps the previous lines).
        panel_width: width of that panel in pixels (default ``2 * size``).
    """
    obs = sim.reset(episode.scene_id, episode.start_position, episode.start_rotation)
    if map is None:
        spec = getattr(sim, "spec", None)
        if spec is None:
            raise VlnavError("episode_frames: the simulator has no .spec; pass map=TopDownMap(...)")
        map = TopDownMap.fit(spec, getattr(sim, "grid", None), height=size)
    goal = list(episode.goal_position)
    text = episode.instruction_text if instruction is None else instruction

    static = map.image()
    scale_px = max(2, int(round(map.height / size * 2)))  # ~2 px lines after resizing
    map.draw_path(static, episode.reference_path, REFERENCE_COLOUR, scale_px)
    map.draw_goal(static, goal)
    map_w = max(1, int(round(map.width * size / map.height)))
    panel_w = (panel_width or 2 * size) if candidates is not None else 0
    width = size + map_w + panel_w
    panel_scale = max(0.3, 0.38 * size / 256)
    panel_title, panel_lines = "candidates", []
    font_scale = max(0.35, 0.45 * size / 256)
    lines = _wrap_text(text, width - 12, font_scale)

    state = sim.agent_state()
    positions = [list(state.position)]
    n = len(actions)
    for t in range(n + 1):
        action = int(actions[t - 1]) if t > 0 else None
        if action is not None and action != 0:
            obs = sim.step(action)
            state = sim.agent_state()
            if list(state.position) != positions[-1]:
                positions.append(list(state.position))
        top = static.copy()
        map.draw_path(top, positions, AGENT_PATH_COLOUR, scale_px)
        map.draw_agent(top, state.position, state.heading)
        top = cv2.resize(top, (map_w, size), interpolation=cv2.INTER_AREA)
        name = "START" if action is None else _action_name(action)
        status = f"step {t}/{n}  {name}"
        d = _distance(sim, state.position, goal)
        if d is not None:
            status += f"  goal {d:.2f} m"
        if getattr(state, "collided", False):
            status += "  (collided)"
        row = [_ego_rgb(sim, obs, size), top]
        if candidates is not None:
            got = candidates(t, sim)
            if got is not None:
                panel_title, panel_lines = f"candidates at step {t}:", list(got)
            row.append(candidate_panel(panel_title, panel_lines, panel_w, size, panel_scale))
        row = np.hstack(row)
        shown = lines
        if notes is not None:
            note = notes[t] if t < len(notes) and notes[t] else ""
            extra = _wrap_text(note, width - 12, font_scale)[:2] if note else []
            shown = [*lines, *extra, *[""] * (2 - len(extra))]
        yield np.vstack([row, _caption(shown, status, width, font_scale)])
        if action == 0:
            return


def _action_name(action: int) -> str:
    return ACTION_NAMES[action] if 0 <= action < len(ACTION_NAMES) else f"ACTION_{action}"


# ---------------------------------------------------------------- files
def _even(frame: np.ndarray) -> np.ndarray:
    """Pad a frame by one edge row/column where needed so both sides are even (yuv420p)."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def _as_rgb(frame: Any) -> np.ndarray:
    f = np.asarray(frame)
    if f.ndim == 2:
        f = np.repeat(f[:, :, None], 3, axis=2)
    if f.ndim != 3 or f.shape[2] not in (3, 4):
        raise VlnavError(f"write_video: a frame must be (H, W, 3) RGB, got shape {f.shape}")
    if f.dtype != np.uint8:
        f = np.clip(f, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(f[:, :, :3])


# ffmpeg settings per container. Both play in browsers: VP9 WebM in every Chromium build
# (including those without proprietary codecs) and Firefox; H.264 MP4 in Chrome, Safari and
# most Chromium builds. ``+faststart`` puts the MP4 index first so playback starts at once.
_FFMPEG: dict[str, dict[str, Any]] = {
    ".mp4": {"codec": "libx264", "quality": 7, "output_params": ["-movflags", "+faststart"]},
    ".webm": {
        "codec": "libvpx-vp9",
        "quality": None,
        "output_params": [
            "-b:v",
            "0",
            "-crf",
            "32",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-row-mt",
            "1",
        ],
    },  # fmt: skip
}
VIDEO_SUFFIXES = (*_FFMPEG, ".gif")


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = 8) -> Path:
    """Write RGB frames as a video, by ``path``'s suffix: ``.mp4`` (H.264, yuv420p),
    ``.webm`` (VP9, yuv420p) or ``.gif`` (animated).

    Video frames are padded to even sizes (yuv420p needs them) and MP4s are written with
    ``+faststart`` so browsers can play them; all frames must share one shape. GIFs loop
    forever; identical consecutive frames are merged (their durations add up). Parent
    folders are created. Returns the path.
    """
    return write_videos(frames, [path], fps)[0]


def write_videos(
    frames: Iterable[np.ndarray], paths: Sequence[str | Path], fps: float = 8
) -> list[Path]:
    """Write the same frames to several files at once (e.g. ``.webm`` and ``.mp4`` for a
    page's ``<video>`` sources), streaming: frames are encoded as they come, never all held.
    See :func:`write_video` for the formats. Returns the paths."""
    out = [Path(p) for p in paths]
    for path in out:
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise VlnavError(
                f"write_video: unsupported suffix '{path.suffix}' (use .mp4, .webm or .gif)"
            )
    if fps <= 0:
        raise VlnavError(f"write_video: fps must be > 0, got {fps}")
    for path in out:
        path.parent.mkdir(parents=True, exist_ok=True)
    sinks = [_GifSink(p, fps) if p.suffix.lower() == ".gif" else _FfmpegSink(p, fps) for p in out]
    n = 0
    first: tuple[int, ...] | None = None
    try:
        for frame in frames:
            f = _as_rgb(frame)
            _check_shape(f, first, n)
            first = f.shape
            for sink in sinks:
                sink.add(f)
            n += 1
        for sink in sinks:
            sink.close()
    except BaseException:
        for sink in sinks:
            sink.abort()
        for path in out:
            path.unlink(missing_ok=True)
        raise
    if n == 0:
        for path in out:
            path.unlink(missing_ok=True)
        raise VlnavError(f"write_video: no frames to write to {', '.join(map(str, out))}")
    return out


def _check_shape(frame: np.ndarray, first: tuple[int, ...] | None, k: int) -> None:
    if first is not None and frame.shape != first:
        raise VlnavError(f"write_video: frame {k} has shape {frame.shape}, frame 0 had {first}")


class _FfmpegSink:
    """Frames into an ffmpeg process (imageio-ffmpeg's bundled binary), settings by suffix."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.writer: Any = None

    def add(self, frame: np.ndarray) -> None:
        f = _even(frame)
        if self.writer is None:
            import imageio_ffmpeg

            opts = _FFMPEG[self.path.suffix.lower()]
            self.writer = imageio_ffmpeg.write_frames(
                str(self.path),
                (f.shape[1], f.shape[0]),
                fps=self.fps,
                codec=opts["codec"],
                quality=opts["quality"],
                pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p",
                macro_block_size=1,
                ffmpeg_log_level="error",
                output_params=list(opts["output_params"]),
            )
            self.writer.send(None)  # start the encoder
        self.writer.send(f)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def abort(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - already failing; the file is removed anyway
            self.writer = None


class _GifSink:
    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.frames: list[np.ndarray] = []

    def add(self, frame: np.ndarray) -> None:
        self.frames.append(frame)

    def close(self) -> None:
        if self.frames:
            _write_gif(self.frames, self.path, self.fps)

    def abort(self) -> None:
        self.frames = []


def _write_gif(frames: Iterable[np.ndarray], path: Path, fps: float) -> int:
    import imageio.v3 as iio

    stack: list[np.ndarray] = []
    for k, frame in enumerate(frames):
        f = _as_rgb(frame)
        _check_shape(f, stack[0].shape if stack else None, k)
        stack.append(f)
    if stack:
        iio.imwrite(path, np.stack(stack), extension=".gif", duration=1000.0 / fps, loop=0)
    return len(stack)


def save_map_png(
    spec: SceneSpec,
    grid: Any,
    path: str | Path,
    paths: Sequence[Sequence[Sequence[float]]] = (),
    goal: Sequence[float] | None = None,
    colors: Sequence[Colour] | None = None,
    px_per_m: float = 40.0,
) -> Path:
    """Save the top-down map of ``spec`` as a PNG, with polylines and a goal on it.

    ``paths`` are drawn in ``colors`` (default: reference green, agent blue, then orange
    and purple); ``grid`` may be None. Parent folders are created. Returns the path.
    """
    m = TopDownMap(spec, grid, px_per_m=px_per_m)
    img = m.image()
    palette = list(colors or [REFERENCE_COLOUR, AGENT_PATH_COLOUR, (240, 140, 20), (150, 60, 190)])
    if goal is not None:
        m.draw_goal(img, goal)
    for k, pts in enumerate(paths):
        m.draw_path(img, pts, palette[k % len(palette)], 2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise VlnavError(f"save_map_png: could not write {path}")
    return path


# ---------------------------------------------------------------- charts (SVG)
CHART_COLOURS: tuple[str, ...] = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
)  # fmt: skip


def _svg_text(x: float, y: float, text: str, **attrs: Any) -> str:
    from html import escape

    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(text)}</text>'


def _svg_frame(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
        f'<rect width="{width}" height="{height}" fill="white"/>'
        + _svg_text(width / 2, 18, title, text_anchor="middle", font_size=14, font_weight="bold")
        + "".join(body)
        + "</svg>\n"
    )


def _write_svg(path: str | Path, svg: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg)
    return path


def bar_chart_svg(
    values: dict[str, dict[str, float]],
    series: Sequence[str],
    path: str | Path,
    title: str = "",
    ymax: float = 1.0,
    width: int = 640,
    height: int = 320,
) -> Path:
    """A grouped bar chart as an SVG file: one group per key of ``values`` (e.g. an agent),
    one bar per name in ``series`` (e.g. SR, SPL), coloured by series, values on the bars.

    Example:
        >>> bar_chart_svg({"random": {"SR": 0.02}, "oracle": {"SR": 1.0}}, ["SR"], "sr.svg")
    """
    left, right, top, bottom = 44, 12, 30, 44
    pw, ph = width - left - right, height - top - bottom
    body = []
    for k in range(6):  # horizontal grid lines and y labels
        v = ymax * k / 5
        y = top + ph - ph * k / 5
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(_svg_text(left - 6, y + 4, f"{v:.1f}", text_anchor="end", fill="#555"))
    groups = list(values)
    gw = pw / max(1, len(groups))
    bw = gw * 0.8 / max(1, len(series))
    for g, name in enumerate(groups):
        x0 = left + g * gw + gw * 0.1
        for s, metric in enumerate(series):
            v = float(values[name].get(metric, float("nan")))
            if not math.isfinite(v):
                continue
            h = ph * min(max(v / ymax, 0.0), 1.0)
            x, y = x0 + s * bw, top + ph - h
            colour = CHART_COLOURS[s % len(CHART_COLOURS)]
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{name} {metric} {v:.3f}</title></rect>'
            )
            body.append(
                _svg_text(x + bw / 2 - 1, y - 3, f"{v:.2f}", text_anchor="middle", font_size=9)
            )
        body.append(_svg_text(left + g * gw + gw / 2, top + ph + 16, name, text_anchor="middle"))
    body.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#333"/>'
    )
    for s, metric in enumerate(series):  # legend under the axis
        x = left + s * 70
        colour = CHART_COLOURS[s % len(CHART_COLOURS)]
        body.append(f'<rect x="{x}" y="{height - 16}" width="10" height="10" fill="{colour}"/>')
        body.append(_svg_text(x + 14, height - 7, metric))
    return _write_svg(path, _svg_frame(width, height, title, body))


def line_chart_svg(
    lines: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    xmax: float | None = None,
    ymax: float = 1.0,
    marker_x: float | None = None,
    marker_label: str = "",
    width: int = 640,
    height: int = 320,
) -> Path:
    """Lines (name -> (xs, ys)) as an SVG file, with an optional dashed vertical marker
    (e.g. the success radius). Axes start at 0; ``xmax`` defaults to the largest x."""
    left, right, top, bottom = 44, 110, 30, 40
    pw, ph = width - left - right, height - top - bottom
    xs_all = [float(x) for xs, _ in lines.values() for x in xs]
    xmax = float(xmax or max(xs_all, default=1.0) or 1.0)

    def px(x: float, y: float) -> tuple[float, float]:
        return left + pw * min(x, xmax) / xmax, top + ph - ph * min(max(y / ymax, 0.0), 1.0)

    body = []
    for k in range(6):
        y = top + ph - ph * k / 5
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(
            _svg_text(left - 6, y + 4, f"{ymax * k / 5:.1f}", text_anchor="end", fill="#555")
        )
        x = left + pw * k / 5
        body.append(
            _svg_text(x, top + ph + 14, f"{xmax * k / 5:.0f}", text_anchor="middle", fill="#555")
        )
    body.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#333"/>'
    )
    body.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" stroke="#333"/>')
    body.append(_svg_text(left + pw / 2, height - 6, xlabel, text_anchor="middle"))
    body.append(
        _svg_text(12, top + ph / 2, ylabel, text_anchor="middle",
                  transform=f"rotate(-90 12 {top + ph / 2:.1f})")
    )  # fmt: skip
    if marker_x is not None:
        mx, _ = px(marker_x, 0)
        body.append(
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" y2="{top + ph}" stroke="#999" '
            'stroke-dasharray="4 3"/>'
        )
        body.append(_svg_text(mx + 3, top + 10, marker_label, fill="#777", font_size=10))
    for k, (name, (xs, ys)) in enumerate(lines.items()):
        colour = CHART_COLOURS[k % len(CHART_COLOURS)]
        pts = " ".join("{:.1f},{:.1f}".format(*px(float(x), float(y))) for x, y in zip(xs, ys))
        body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        ly = top + 12 + 16 * k
        body.append(
            f'<line x1="{left + pw + 10}" x2="{left + pw + 28}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        body.append(_svg_text(left + pw + 32, ly, name))
    return _write_svg(path, _svg_frame(width, height, title, body))
