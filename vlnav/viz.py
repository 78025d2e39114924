"""Pictures of houses and episodes: a top-down map, replay frames, MP4/GIF and PNG output.

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
    >>> write_video(frames, "runs/viz/episode_1.mp4")
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vlnav import VlnavError
from vlnav.scenes.spec import SceneSpec
from vlnav.sim.base import ACTION_NAMES

Colour = tuple[int, int, int]

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
    width = size + map_w
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
        row = np.hstack([_ego_rgb(sim, obs, size), top])
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


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = 8) -> Path:
    """Write RGB frames as an MP4 (H.264, yuv420p) or an animated GIF, by ``path``'s suffix.

    MP4 frames are padded to even sizes (yuv420p needs them) and the file is written with
    ``+faststart`` so browsers can play it; all frames must share one shape. GIFs loop
    forever; identical consecutive frames are merged (their durations add up). Parent
    folders are created. Returns the path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise VlnavError(f"write_video: unsupported suffix '{path.suffix}' (use .mp4 or .gif)")
    if fps <= 0:
        raise VlnavError(f"write_video: fps must be > 0, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        n = _write_mp4(frames, path, fps) if suffix == ".mp4" else _write_gif(frames, path, fps)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if n == 0:
        path.unlink(missing_ok=True)
        raise VlnavError(f"write_video: no frames to write to {path}")
    return path


def _check_shape(frame: np.ndarray, first: tuple[int, ...] | None, k: int) -> None:
    if first is not None and frame.shape != first:
        raise VlnavError(f"write_video: frame {k} has shape {frame.shape}, frame 0 had {first}")


def _write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float) -> int:
    import imageio_ffmpeg

    writer = None
    first: tuple[int, ...] | None = None
    n = 0
    try:
        for frame in frames:
            f = _even(_as_rgb(frame))
            _check_shape(f, first, n)
            if writer is None:
                first = f.shape
                writer = imageio_ffmpeg.write_frames(
                    str(path),
                    (f.shape[1], f.shape[0]),
                    fps=fps,
                    codec="libx264",
                    pix_fmt_in="rgb24",
                    pix_fmt_out="yuv420p",
                    macro_block_size=1,
                    quality=7,
                    ffmpeg_log_level="error",
                    output_params=["-movflags", "+faststart"],
                )
                writer.send(None)  # start the encoder
            writer.send(f)
            n += 1
    finally:
        if writer is not None:
            writer.close()
    return n


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
