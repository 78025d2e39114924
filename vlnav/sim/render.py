"""Offscreen renderer of the builtin simulator: RGB, planar depth and instance ids.

One OpenGL pass (moderngl, Mesa EGL: llvmpipe on CPU machines, the GPU driver elsewhere)
writes three colour attachments at once: shaded colour (RGBA8), the instance id (R32I)
and eye-space z (R32F, exact planar depth in metres, no depth-buffer linearisation).

Conventions are Habitat's: y up, metres, heading (yaw) 0 looks along -z and a positive
yaw turns left (a rotation about +y), so the camera looks along
``(-sin yaw, 0, -cos yaw)``; positive pitch looks up. Images are row 0 at the top.

Nothing here creates a GL context at import time: ``Renderer()`` does.

Example:
    >>> import trimesh
    >>> box = trimesh.creation.box((1, 1, 1))
    >>> box.apply_translation((0, 1.5, -3))
    >>> box.visual.face_colors = (255, 0, 0, 255)
    >>> r = Renderer(128, 128)
    >>> r.set_geometry(*Renderer.geometry_from_meshes([(7, box)]))
    >>> obs = r.render((0.0, 1.5, 0.0), yaw=0.0)
    >>> int(obs["semantic"][64, 64]), round(float(obs["depth"][64, 64]), 2)
    (7, 2.5)
    >>> r.close()
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vlnav import VlnavError

if TYPE_CHECKING:
    import trimesh

SENSORS = ("rgb", "depth", "semantic")
EGL_INSTALL_HINT = "apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri"


class RendererError(VlnavError, RuntimeError):
    """The renderer cannot start (no EGL) or is used in a way that would give wrong frames."""


_VERTEX_SHADER = """
#version 330
uniform mat4 u_view;   // world -> eye
uniform mat4 u_proj;   // eye -> clip (y flipped so that row 0 of the readback is the top)
uniform vec3 u_eye;    // camera position in world coordinates
uniform vec3 u_light;  // unit vector towards the light
uniform float u_ambient;

in vec3 in_position;
in vec3 in_color;
in vec3 in_normal;
in int in_id;

out vec3 v_color;
out float v_depth;
flat out int v_id;

void main() {
    vec4 eye = u_view * vec4(in_position, 1.0);
    // Two-sided lighting: turn the normal towards the viewer so both faces of a wall are lit.
    vec3 n = in_normal;
    if (dot(n, u_eye - in_position) < 0.0) n = -n;
    float lambert = max(dot(n, u_light), 0.0);
    v_color = in_color * (u_ambient + (1.0 - u_ambient) * lambert);
    v_depth = -eye.z;
    v_id = in_id;
    gl_Position = u_proj * eye;
}
"""

_FRAGMENT_SHADER = """
#version 330
in vec3 v_color;
in float v_depth;
flat in int v_id;
#ifdef OUT_RGB
layout(location = OUT_RGB) out vec4 o_rgb;
#endif
#ifdef OUT_SEMANTIC
layout(location = OUT_SEMANTIC) out int o_id;
#endif
#ifdef OUT_DEPTH
layout(location = OUT_DEPTH) out float o_depth;
#endif

void main() {
#ifdef OUT_RGB
    o_rgb = vec4(v_color, 1.0);
#endif
#ifdef OUT_SEMANTIC
    o_id = v_id;
#endif
#ifdef OUT_DEPTH
    o_depth = v_depth;
#endif
}
"""


def _create_context() -> Any:
    """A standalone headless GL 3.3 context via EGL, or a one-line error saying how to fix it."""
    try:
        import moderngl
    except ImportError as e:  # pragma: no cover - moderngl is a core dependency
        raise RendererError("the renderer needs moderngl: pip install moderngl") from e
    try:
        return moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RendererError(
            f"cannot create a headless OpenGL 3.3 context with EGL ({reason}); "
            f"install Mesa EGL: {EGL_INSTALL_HINT}"
        ) from e


def _normalise_sensors(sensors: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(sensors, str):
        sensors = (sensors,)
    unknown = [s for s in sensors if s not in SENSORS]
    if unknown or not sensors:
        raise ValueError(f"sensors must be a non-empty subset of {SENSORS}, got {tuple(sensors)}")
    return tuple(s for s in SENSORS if s in sensors)  # canonical order, no duplicates


def _flat_normals(positions: np.ndarray) -> np.ndarray:
    tri = positions.reshape(-1, 3, 3)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.divide(n, length, out=np.zeros_like(n), where=length > 0)
    return np.repeat(n, 3, axis=0).astype(np.float32)


class Renderer:
    """Headless OpenGL renderer of a static triangle soup, for one thread.

    Args:
        width, height: image size in pixels.
        hfov: horizontal field of view in degrees (pixels are square, as in Habitat).
        near, far: clipping distances in metres; anything beyond ``far`` is background.
        ambient: share of the light that does not depend on the surface orientation.
        light_dir: direction towards a directional light (world coordinates).
        background: RGB colour (0-255) of pixels where nothing was hit.

    Outputs of ``render``: ``rgb`` uint8 (H, W, 3), ``depth`` float32 (H, W) planar z-depth
    in metres along the optical axis, ``semantic`` int32 (H, W) instance ids; depth and
    semantic are 0 where nothing was hit. Returned arrays are fresh, never reused.

    Threads and processes: a GL context works only in the thread that created it (used from
    another thread it silently returns blank frames), so every method checks the thread and
    raises ``RuntimeError``; create one ``Renderer`` per thread or process. Forking a process
    after a context exists hangs the child: worker processes must be started with the
    ``"spawn"`` start method (``multiprocessing.get_context("spawn")``).
    """

    def __init__(
        self,
        width: int = 224,
        height: int = 224,
        hfov: float = 90.0,
        near: float = 0.05,
        far: float = 60.0,
        ambient: float = 0.45,
        light_dir: Sequence[float] = (0.3, 1.0, 0.5),
        background: Sequence[int] = (0, 0, 0),
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"width and height must be >= 1, got {width}x{height}")
        if not 0.0 < hfov < 180.0:
            raise ValueError(f"hfov must be in (0, 180) degrees, got {hfov}")
        if not 0.0 < near < far:
            raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
        if not 0.0 <= ambient <= 1.0:
            raise ValueError(f"ambient must be in [0, 1], got {ambient}")
        light = np.asarray(light_dir, dtype=np.float64)
        if light.shape != (3,) or not np.linalg.norm(light) > 0:
            raise ValueError(f"light_dir must be a non-zero 3-vector, got {light_dir}")
        if len(background) != 3:
            raise ValueError(f"background must be an RGB triple, got {background}")

        self.width, self.height = int(width), int(height)
        self.hfov, self.near, self.far = float(hfov), float(near), float(far)
        self.background = tuple(int(c) for c in background)
        self._thread = threading.get_ident()
        self._ctx = _create_context()
        import moderngl

        self._moderngl = moderngl
        self._ctx.enable(moderngl.DEPTH_TEST)
        self._ctx.disable(moderngl.CULL_FACE)
        self._light = tuple(float(v) for v in light / np.linalg.norm(light))
        self._ambient = float(ambient)
        self._proj = self._projection_bytes()
        self._programs: dict[tuple[str, ...], tuple[Any, dict[str, Any]]] = {}
        self._vaos: dict[tuple[str, ...], Any] = {}
        self._targets: dict[int, dict[str, Any]] = {}  # views -> textures and framebuffers
        self._buffers: list[Any] = []
        self._n_vertices = 0
        self._closed = False

    # ------------------------------------------------------------------ set-up

    def _check_thread(self) -> None:
        if self._closed:
            raise RendererError("Renderer is closed")
        current = threading.get_ident()
        if current != self._thread:
            raise RendererError(
                f"Renderer used from thread {current} but created in thread {self._thread}; "
                "create one Renderer per thread/process"
            )

    def _projection_bytes(self) -> bytes:
        fx = 1.0 / math.tan(math.radians(self.hfov) / 2.0)
        fy = fx * self.width / self.height  # square pixels
        n, f = self.near, self.far
        proj = np.zeros((4, 4), dtype=np.float32)
        proj[0, 0] = fx
        proj[1, 1] = -fy  # flipped: GL's bottom-up readback then comes out top row first
        proj[2, 2] = (f + n) / (n - f)
        proj[2, 3] = 2.0 * f * n / (n - f)
        proj[3, 2] = -1.0
        return proj.T.tobytes()  # GL wants column-major

    def _program(self, sensors: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
        """The shader program writing exactly ``sensors`` (attachment i = sensors[i])."""
        if sensors not in self._programs:
            defines = "".join(
                f"#define OUT_{name.upper()} {i}\n" for i, name in enumerate(sensors)
            )
            fragment = _FRAGMENT_SHADER.replace("#version 330\n", "#version 330\n" + defines, 1)
            prog = self._ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=fragment)
            prog["u_proj"].write(self._proj)
            prog["u_light"].value = self._light
            prog["u_ambient"].value = self._ambient
            self._programs[sensors] = (prog, {"view": prog["u_view"], "eye": prog["u_eye"]})
        return self._programs[sensors]

    def _target(self, views: int) -> dict[str, Any]:
        """Textures for ``views`` images stacked vertically, and one framebuffer per sensor set."""
        if views not in self._targets:
            size = (self.width, self.height * views)
            ctx = self._ctx
            self._targets[views] = {
                "rgb": ctx.texture(size, 4),
                "semantic": ctx.texture(size, 1, dtype="i4"),
                "depth": ctx.texture(size, 1, dtype="f4"),
                "zbuffer": ctx.depth_renderbuffer(size),
                "fbos": {},
            }
        return self._targets[views]

    def _framebuffer(self, target: dict[str, Any], sensors: tuple[str, ...]) -> Any:
        if sensors not in target["fbos"]:
            target["fbos"][sensors] = self._ctx.framebuffer(
                [target[name] for name in sensors], target["zbuffer"]
            )
        return target["fbos"][sensors]

    def _clear(self, target: dict[str, Any], sensors: tuple[str, ...], fbo: Any) -> None:
        # One clear value goes to every attachment, and it is written as raw bits into the
        # integer one, so ids and depth are cleared with 0 and a coloured background apart.
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        if "rgb" in sensors and any(self.background):
            r, g, b = (c / 255.0 for c in self.background)
            self._framebuffer(target, ("rgb",)).clear(r, g, b, 1.0, depth=1.0)

    # ------------------------------------------------------------------ public API

    def set_geometry(
        self,
        positions: np.ndarray,
        colors: np.ndarray,
        instance_ids: np.ndarray,
        normals: np.ndarray | None = None,
    ) -> None:
        """Replace the scene with a non-indexed triangle soup.

        Args:
            positions: (N, 3) vertex positions in metres, N % 3 == 0, 3 rows per triangle.
            colors: (N, 3) vertex colours in [0, 1].
            instance_ids: (N,) positive int32 instance ids (what ``semantic`` reports).
            normals: (N, 3) vertex normals; flat face normals when None.
        """
        self._check_thread()
        positions = np.ascontiguousarray(positions, dtype=np.float32)
        n = len(positions)
        if positions.ndim != 2 or positions.shape[1] != 3 or n % 3:
            raise ValueError(f"positions must be (N, 3) with N % 3 == 0, got {positions.shape}")
        colors = np.asarray(colors, dtype=np.float32)
        if colors.shape != (n, 3):
            raise ValueError(f"colors must be {(n, 3)}, got {colors.shape}")
        ids = np.asarray(instance_ids)
        if ids.shape != (n,):
            raise ValueError(f"instance_ids must be {(n,)}, got {ids.shape}")
        if n and (ids.min() < 1 or ids.max() > np.iinfo(np.int32).max):
            raise ValueError("instance_ids must be positive int32 (0 means background)")
        if normals is None:
            normals = _flat_normals(positions)
        normals = np.asarray(normals, dtype=np.float32)
        if normals.shape != (n, 3):
            raise ValueError(f"normals must be {(n, 3)}, got {normals.shape}")

        for vao in self._vaos.values():
            vao.release()
        for buf in self._buffers:
            buf.release()
        self._vaos.clear()
        self._buffers = []
        self._n_vertices = n
        if n == 0:
            return
        vertices = np.concatenate([positions, np.clip(colors, 0.0, 1.0), normals], axis=1)
        self._buffers = [
            self._ctx.buffer(np.ascontiguousarray(vertices, dtype=np.float32)),
            self._ctx.buffer(np.ascontiguousarray(ids, dtype=np.int32)),
        ]

    def _vao(self, sensors: tuple[str, ...]) -> Any:
        if sensors not in self._vaos:
            prog, _ = self._program(sensors)
            vertices, ids = self._buffers
            # The compiler drops attributes a variant does not use (no ids for RGB only):
            # skip those with padding so the interleaved layout stays the same.
            fmt, names = [], []
            for name in ("in_position", "in_color", "in_normal"):
                fmt.append("3f" if name in prog else "12x")
                names += [name] if name in prog else []
            content = [(vertices, " ".join(fmt), *names)]
            if "in_id" in prog:
                content.append((ids, "1i", "in_id"))
            self._vaos[sensors] = self._ctx.vertex_array(prog, content)
        return self._vaos[sensors]

    def render(
        self,
        position: Sequence[float],
        yaw: float,
        pitch: float = 0.0,
        sensors: Sequence[str] = SENSORS,
    ) -> dict[str, np.ndarray]:
        """Render one view from the camera eye ``position`` (x, y, z) with ``yaw``/``pitch`` in radians.

        Returns a dict with the requested sensors: ``rgb`` (H, W, 3) uint8, ``depth``
        (H, W) float32 metres, ``semantic`` (H, W) int32.
        """
        out = self.render_views(position, (yaw,), pitch=pitch, sensors=sensors)
        return {name: image[0] for name, image in out.items()}

    def render_views(
        self,
        position: Sequence[float],
        yaws: Sequence[float],
        pitch: float = 0.0,
        sensors: Sequence[str] = SENSORS,
    ) -> dict[str, np.ndarray]:
        """Render several headings from one position (e.g. a 12-view panorama) in one pass.

        All views go into one tall framebuffer, one viewport each, and are read back once.
        Returns the requested sensors stacked along a first axis of length ``len(yaws)``:
        ``rgb`` (B, H, W, 3), ``depth`` (B, H, W), ``semantic`` (B, H, W).
        """
        self._check_thread()
        sensors = _normalise_sensors(sensors)
        views = len(yaws)
        if views == 0:
            raise ValueError("yaws must not be empty")
        x, y, z = (float(v) for v in position)
        w, h = self.width, self.height
        target = self._target(views)
        fbo = self._framebuffer(target, sensors)
        fbo.use()
        self._clear(target, sensors, fbo)
        if self._n_vertices:
            vao = self._vao(sensors)
            _, uniforms = self._program(sensors)
            uniforms["eye"].value = (x, y, z)
            sp, cp = math.sin(pitch), math.cos(pitch)
            for i, yaw in enumerate(yaws):
                uniforms["view"].write(_view_matrix_bytes(x, y, z, float(yaw), sp, cp))
                fbo.viewport = (0, i * h, w, h)
                vao.render()
            fbo.viewport = (0, 0, w, h * views)

        out: dict[str, np.ndarray] = {}
        if "rgb" in sensors:
            out["rgb"] = np.empty((views, h, w, 3), dtype=np.uint8)
            fbo.read_into(out["rgb"], components=3, attachment=sensors.index("rgb"))
        if "depth" in sensors:
            out["depth"] = np.empty((views, h, w), dtype=np.float32)
            fbo.read_into(
                out["depth"], components=1, attachment=sensors.index("depth"), dtype="f4"
            )
        if "semantic" in sensors:
            out["semantic"] = np.empty((views, h, w), dtype=np.int32)
            fbo.read_into(
                out["semantic"], components=1, attachment=sensors.index("semantic"), dtype="i4"
            )
        return out

    def close(self) -> None:
        """Release the GL context and everything in it (idempotent)."""
        if self._closed:
            return
        self._check_thread()
        self._closed = True
        self._ctx.release()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def geometry_from_meshes(
        meshes: Sequence[tuple[int, trimesh.Trimesh]],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flatten ``(instance_id, mesh)`` pairs into the arrays ``set_geometry`` takes.

        Colours come from the mesh's face or vertex colours (face colours are repeated on the
        three corners; textured meshes use their average colour). Normals are flat face normals.

        Returns:
            positions (N, 3) float32, colors (N, 3) float32 in [0, 1], instance_ids (N,) int32,
            normals (N, 3) float32, with N = 3 * total number of faces.
        """
        positions, colors, ids, normals = [], [], [], []
        for instance_id, mesh in meshes:
            if int(instance_id) < 1:
                raise ValueError(f"instance ids must be positive, got {instance_id}")
            faces = np.asarray(mesh.faces)
            if len(faces) == 0:
                continue
            visual = mesh.visual
            if getattr(visual, "kind", None) == "texture":
                visual = visual.to_color()
            if getattr(visual, "kind", None) == "vertex":
                rgb = np.asarray(visual.vertex_colors)[faces.reshape(-1), :3]
            else:  # face colours, or trimesh's default grey when none were set
                rgb = np.repeat(np.asarray(visual.face_colors)[:, :3], 3, axis=0)
            positions.append(np.asarray(mesh.vertices, dtype=np.float32)[faces.reshape(-1)])
            colors.append(rgb.astype(np.float32) / 255.0)
            ids.append(np.full(3 * len(faces), int(instance_id), dtype=np.int32))
            normals.append(np.repeat(np.asarray(mesh.face_normals, dtype=np.float32), 3, axis=0))
        if not positions:
            empty = np.zeros((0, 3), dtype=np.float32)
            return empty, empty.copy(), np.zeros(0, dtype=np.int32), empty.copy()
        return (
            np.concatenate(positions),
            np.concatenate(colors),
            np.concatenate(ids),
            np.concatenate(normals),
        )


def _view_matrix_bytes(x: float, y: float, z: float, yaw: float, sp: float, cp: float) -> bytes:
    """World -> eye matrix (column-major float32) of a camera at (x, y, z), yaw then pitch.

    Camera-to-world rotation R = R_y(yaw) @ R_x(pitch); the view matrix is [R^T | -R^T eye].
    """
    sy, cy = math.sin(yaw), math.cos(yaw)
    # Rows of R^T: the camera's right, up and back axes in world coordinates.
    right = (cy, 0.0, -sy)
    up = (sy * sp, cp, cy * sp)
    back = (sy * cp, -sp, cy * cp)
    tx = -(right[0] * x + right[1] * y + right[2] * z)
    ty = -(up[0] * x + up[1] * y + up[2] * z)
    tz = -(back[0] * x + back[1] * y + back[2] * z)
    # Column-major: column j holds (row0[j], row1[j], row2[j], row3[j]).
    return np.array(
        [
            right[0], up[0], back[0], 0.0,
            right[1], up[1], back[1], 0.0,
            right[2], up[2], back[2], 0.0,
            tx, ty, tz, 1.0,
        ],
        dtype=np.float32,
    ).tobytes()  # fmt: skip


# ---------------------------------------------------------------------- benchmark


def benchmark_house(
    rooms: int = 5, objects: int = 50, seed: int = 0
) -> list[tuple[int, trimesh.Trimesh]]:
    """A stand-in house for timing: ``rooms`` 4 x 5 m rooms in a row, ~20k triangles.

    Walls, floors and ceilings are boxes; each object is a sphere on a cylinder (~450
    triangles), spread over the rooms. Returns ``(instance_id, mesh)`` pairs.
    """
    import trimesh

    rng = np.random.default_rng(seed)
    meshes: list[tuple[int, trimesh.Trimesh]] = []

    def add(mesh: trimesh.Trimesh, rgb: Sequence[float]) -> None:
        mesh.visual.face_colors = [*(int(255 * c) for c in rgb), 255]
        meshes.append((len(meshes) + 1, mesh))

    def box(extents: Sequence[float], center: Sequence[float]) -> trimesh.Trimesh:
        return trimesh.creation.box(extents, trimesh.transformations.translation_matrix(center))

    room_w, room_d, height, t = 4.0, 5.0, 2.6, 0.1
    for r in range(rooms):
        x0 = r * room_w
        cx = x0 + room_w / 2
        add(box((room_w, t, room_d), (cx, -t / 2, -room_d / 2)), rng.uniform(0.3, 0.9, 3))
        add(box((room_w, t, room_d), (cx, height + t / 2, -room_d / 2)), (0.9, 0.9, 0.9))
        for zc in (0.0, -room_d):  # front and back walls
            add(box((room_w, height, t), (cx, height / 2, zc)), rng.uniform(0.3, 0.9, 3))
        # side wall at x0 with a 1 m door in the middle (outer wall closed)
        if r == 0:
            add(box((t, height, room_d), (x0, height / 2, -room_d / 2)), (0.8, 0.8, 0.7))
        else:
            side = (room_d - 1.0) / 2
            for zc in (-side / 2, -room_d + side / 2):
                add(box((t, height, side), (x0, height / 2, zc)), (0.8, 0.8, 0.7))
    add(box((t, height, room_d), (rooms * room_w, height / 2, -room_d / 2)), (0.8, 0.8, 0.7))
    for i in range(objects):
        r = i % rooms
        x = r * room_w + rng.uniform(0.5, room_w - 0.5)
        z = -rng.uniform(0.5, room_d - 0.5)
        leg = trimesh.creation.cylinder(radius=0.08, height=0.6, sections=32)
        leg.apply_translation((x, 0.3, z))
        top = trimesh.creation.icosphere(subdivisions=2, radius=0.25)
        top.apply_translation((x, 0.8, z))
        add(trimesh.util.concatenate([leg, top]), rng.uniform(0.1, 1.0, 3))
    return meshes


def benchmark_renderer(
    sizes: Sequence[int] = (128, 224),
    seconds: float = 1.0,
    meshes: Sequence[tuple[int, trimesh.Trimesh]] | None = None,
) -> dict[str, Any]:
    """Renders per second on ``benchmark_house()`` (or ``meshes``), for the project's bench.

    For each square size: single views and 12-view panoramas (30 degree steps), RGB only and
    all sensors, at positions and headings spread over the house. Returns a flat dict such as
    ``{"triangles": 20184, "128/single/rgb": 1500.0, "128/pano12/all": 150.0, ...}`` where
    panorama figures are panoramas per second.
    """
    geometry = Renderer.geometry_from_meshes(meshes if meshes is not None else benchmark_house())
    positions = geometry[0]
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    rng = np.random.default_rng(0)
    eyes = np.stack(
        [
            rng.uniform(lo[0] + 0.5, hi[0] - 0.5, 64),
            np.full(64, lo[1] + 1.25),
            rng.uniform(lo[2] + 0.5, hi[2] - 0.5, 64),
        ],
        axis=1,
    )
    yaws = rng.uniform(-math.pi, math.pi, 64)
    pano = [i * math.pi / 6 for i in range(12)]
    result: dict[str, Any] = {"triangles": len(positions) // 3}
    for size in sizes:
        renderer = Renderer(size, size)
        try:
            renderer.set_geometry(*geometry)
            result["renderer"] = renderer._ctx.info["GL_RENDERER"]
            for label, sensors in (("rgb", ("rgb",)), ("all", SENSORS)):
                for kind in ("single", "pano12"):

                    def once(i: int, sensors=sensors, kind=kind) -> None:
                        eye = eyes[i % len(eyes)]
                        if kind == "single":
                            renderer.render(eye, yaws[i % len(yaws)], sensors=sensors)
                        else:
                            renderer.render_views(eye, pano, sensors=sensors)

                    for i in range(5):  # warm-up: shader compile, framebuffer allocation
                        once(i)
                    count, start = 0, time.perf_counter()
                    while time.perf_counter() - start < seconds:
                        once(count)
                        count += 1
                    result[f"{size}/{kind}/{label}"] = count / (time.perf_counter() - start)
        finally:
            renderer.close()
    return result
