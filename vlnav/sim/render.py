"""Offscreen renderer of the builtin simulator: RGB, planar depth and instance ids.

One OpenGL pass (moderngl over Mesa EGL: llvmpipe on CPU machines, the GPU driver
elsewhere) writes up to three colour attachments at once: shaded colour (RGBA8), the
instance id (R32I) and the planar depth (R32F, metres along the optical axis, exact: no
depth-buffer linearisation). Only the attachments of the requested sensors are written and
read back, so RGB alone is cheaper.

Conventions are Habitat's: y up, metres, heading (yaw) 0 looks along -z and a positive yaw
turns left (a rotation about +y), so the camera looks along ``(-sin yaw, 0, -cos yaw)``;
positive pitch looks up. Image row 0 is the top of the image.

Speed on a CPU (llvmpipe) comes from submitting little: triangles are grouped into small
spatial chunks that are culled against each view's frustum on the CPU and drawn with one
multi-draw call, back faces of closed meshes are culled, and a panorama goes into one tall
framebuffer that is read back once. Unless ``LP_NUM_THREADS`` is set, llvmpipe is told to
rasterise in the calling thread (thread hand-offs cost about what they save at these image
sizes): scale out with worker processes, one per core. ``benchmark_renderer`` measures it.

Nothing here creates a GL context at import time: ``Renderer()`` does.

Example:
    >>> import trimesh
    >>> box = trimesh.creation.box((1, 1, 1))
    >>> box = box.apply_translation((0, 1.5, -3))
    >>> box.visual.face_colors = (255, 0, 0, 255)
    >>> r = Renderer(128, 128)
    >>> r.set_geometry(*Renderer.geometry_from_meshes([(7, box)]))
    >>> obs = r.render((0.0, 1.5, 0.0), yaw=0.0)
    >>> int(obs["semantic"][64, 64]), round(float(obs["depth"][64, 64]), 2)
    (7, 2.5)
    >>> r.close()
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vlnav import VlnavError

if TYPE_CHECKING:
    import trimesh

SENSORS = ("rgb", "depth", "semantic")
EGL_INSTALL_HINT = "apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri"


class RendererError(VlnavError, RuntimeError):
    """The renderer cannot start (no EGL) or is used in a way that would give wrong frames."""


# Variants by defines: OUT_<SENSOR> gives the attachment of each requested sensor (the others
# are compiled out); SHADED adds a palette matrix and a coloured light, TEXTURED procedural
# surface patterns (rendering domains, ``Shading``). Domain A compiles neither.
_VERTEX_SHADER = """
#version 330
uniform mat4 u_view;   // world -> eye
uniform mat4 u_proj;   // eye -> clip, y flipped so that row 0 of the readback is the top
uniform vec3 u_eye;    // camera position in world coordinates
uniform vec3 u_light;  // unit vector towards the light
uniform float u_ambient;
#ifdef SHADED
uniform mat3 u_palette;    // surface colour transform
uniform vec3 u_light_rgb;  // colour and intensity of the light
#endif

in vec3 in_position;
in vec3 in_color;
in vec3 in_normal;
in int in_id;
#ifdef TEXTURED
in int in_material;
out vec3 v_world;
flat out vec3 v_normal;
flat out int v_material;
#endif

out vec3 v_color;
flat out int v_id;

void main() {
    // Two-sided Lambert: the normal is turned towards the viewer, so a wall seen from
    // either side is lit the same way.
    vec3 n = in_normal;
    if (dot(n, u_eye - in_position) < 0.0) n = -n;
#ifdef SHADED
    vec3 albedo = clamp(u_palette * in_color, 0.0, 1.0) * u_light_rgb;
#else
    vec3 albedo = in_color;
#endif
    v_color = albedo * (u_ambient + (1.0 - u_ambient) * max(dot(n, u_light), 0.0));
    v_id = in_id;
#ifdef TEXTURED
    v_world = in_position;
    v_normal = n;
    v_material = in_material;
#endif
    gl_Position = u_proj * (u_view * vec4(in_position, 1.0));
}
"""

_FRAGMENT_SHADER = """
#version 330
in vec3 v_color;
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
#ifdef TEXTURED
in vec3 v_world;
flat in vec3 v_normal;
flat in int v_material;
uniform float u_tex_contrast;  // 0 flat .. 1 full pattern
uniform float u_tex_scale;     // pattern size multiplier

float hash12(vec2 p) {  // Dave Hoskins' sine-free hash, [0, 1)
    vec3 p3 = fract(vec3(p.xyx) * 0.1031);
    p3 += dot(p3, p3.yzx + 33.33);
    return fract((p3.x + p3.y) * p3.z);
}

float vnoise(vec2 p) {  // value noise, [0, 1)
    vec2 i = floor(p);
    vec2 f = fract(p);
    vec2 u = f * f * (3.0 - 2.0 * f);
    return mix(mix(hash12(i), hash12(i + vec2(1.0, 0.0)), u.x),
               mix(hash12(i + vec2(0.0, 1.0)), hash12(i + vec2(1.0, 1.0)), u.x), u.y);
}

float fbm(vec2 p) {  // three octaves, [0, 0.875), mean about 0.44
    return 0.5 * vnoise(p) + 0.25 * vnoise(2.03 * p + 17.0) + 0.125 * vnoise(4.07 * p + 31.0);
}

// Brightness factor of a surface's pattern at world point w with normal n, by material:
// 0 smooth, 1 plaster, 2 wood, 3 tiles, 4 fabric, 5 carpet (vlnav/sim/domains.py MATERIALS).
// One fbm and one cell hash serve every material (llvmpipe runs all branches of a SIMD
// group, so per-material noise would cost each fragment every material's noise).
const float NOISE_FREQ[6] = float[6](1.5, 2.0, 1.0, 5.0, 6.0, 2.5);  // fbm cycles per metre
const float CELL_FREQ[6] = float[6](1.0, 120.0, 1.0, 2.2222, 1.0, 60.0);  // grain cells per m

float pattern(int m, vec3 w, vec3 n) {
    vec3 a = abs(n);
    vec2 uv = a.y > max(a.x, a.z) ? w.xz : (a.x > a.z ? w.zy : w.xy);  // planar projection
    // wood: staggered boards 0.16 m wide and 1.2 m long; the grain runs along them
    float row = floor(uv.y / 0.16);
    float along = uv.x + 1.7 * fract(row * 0.618);
    bool wood = m == 2;
    vec2 q = wood ? vec2(along * 1.2, uv.y * 25.0) : uv * NOISE_FREQ[m];
    float g = fbm(q) - 0.44;  // about zero-mean
    vec2 cell = wood ? vec2(row, floor(along / 1.2)) : floor(uv * CELL_FREQ[m]);
    float h = hash12(cell + 11.0) - 0.5;
    if (m == 1) {  // plaster: soft blotches and a fine grain
        return 1.0 + 0.28 * g + 0.12 * h;
    }
    if (wood) {  // one tone per board, wavy grain lines, dark seams
        float grain = 0.5 + 0.5 * sin(6.2832 * (4.0 * g + uv.y * 12.0));
        float seam = min(fract(uv.y / 0.16), fract(along / 1.2) * 7.5);
        return (0.97 + 0.35 * h) * (0.75 + 0.4 * grain) * (seam < 0.08 ? 0.55 : 1.0);
    }
    if (m == 3) {  // tiles: 0.45 m squares, each a little different, light grout lines
        vec2 e = abs(fract(uv * CELL_FREQ[3]) - 0.5);
        float grout = max(e.x, e.y) > 0.45 ? 1.3 : 1.0;
        return (0.97 + 0.3 * h) * grout * (1.0 + 0.15 * g);
    }
    if (m == 4) {  // fabric: a woven check, 12 cm, with mottling
        float check = step(0.5, fract(uv.x * 4.0)) + step(0.5, fract(uv.y * 4.0)) - 1.0;
        float weave = sin(uv.x * 180.0) * sin(uv.y * 180.0);
        return 1.0 + 0.16 * check + 0.08 * weave + 0.32 * g;
    }
    if (m == 5) {  // carpet: coarse speckle and patches
        return 1.0 + 0.35 * h + 0.32 * g;
    }
    return 1.0 + 0.13 * g;  // smooth: faint unevenness
}
#endif

void main() {
#ifdef OUT_RGB
#ifdef TEXTURED
    float f = mix(1.0, pattern(v_material, v_world / u_tex_scale, v_normal), u_tex_contrast);
    o_rgb = vec4(clamp(v_color * f, 0.0, 1.0), 1.0);
#else
    o_rgb = vec4(v_color, 1.0);
#endif
#endif
#ifdef OUT_SEMANTIC
    o_id = v_id;
#endif
#ifdef OUT_DEPTH
    o_depth = 1.0 / gl_FragCoord.w;  // gl_FragCoord.w = 1 / w_clip and w_clip = -z_eye
#endif
}
"""


@dataclasses.dataclass(frozen=True)
class Shading:
    """How surfaces are coloured and lit: the renderer's part of a rendering domain.

    The default is domain A (flat colours, a white light from ``light_dir``); see
    ``vlnav.sim.domains`` for the domains' randomisation ranges.

    Args:
        light_dir: direction towards the directional light (world coordinates).
        ambient: share of the light that does not depend on the surface orientation.
        light_rgb: colour and intensity of the light (multiplies the lit colour).
        colour_matrix: 3 x 3 row-major transform of every surface colour (a palette).
        textures: procedural surface patterns by material (``set_geometry(materials=...)``).
        texture_contrast: 0 flat .. 1 full pattern.
        texture_scale: pattern size multiplier.
    """

    light_dir: tuple[float, float, float] = (0.3, 1.0, 0.5)
    ambient: float = 0.45
    light_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    colour_matrix: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    textures: bool = False
    texture_contrast: float = 1.0
    texture_scale: float = 1.0

    def __post_init__(self) -> None:
        light = np.asarray(self.light_dir, dtype=np.float64)
        if light.shape != (3,) or not np.linalg.norm(light) > 0:
            raise ValueError(f"light_dir must be a non-zero 3-vector, got {self.light_dir}")
        if not 0.0 <= self.ambient <= 1.0:
            raise ValueError(f"ambient must be in [0, 1], got {self.ambient}")
        if len(self.light_rgb) != 3 or len(self.colour_matrix) != 9:
            raise ValueError("light_rgb must have 3 values and colour_matrix 9")
        if not self.texture_scale > 0:
            raise ValueError(f"texture_scale must be > 0, got {self.texture_scale}")

    @property
    def variant(self) -> str:
        """The shader variant it needs: "plain" (domain A's), "shaded" or "textured"."""
        if self.textures:
            return "textured"
        plain = Shading()
        if self.light_rgb != plain.light_rgb or self.colour_matrix != plain.colour_matrix:
            return "shaded"
        return "plain"


def _create_context() -> Any:
    """A standalone headless GL 3.3+ context via EGL, or a one-line error saying how to fix it."""
    try:
        import moderngl
    except ImportError as e:  # pragma: no cover - moderngl is a core dependency
        raise RendererError("the renderer needs moderngl: pip install moderngl") from e
    # llvmpipe (Mesa's CPU driver) rasterises in the calling thread unless told otherwise:
    # handing 128^2-224^2 frames to raster threads costs about as much as it saves, and
    # simulators scale by worker processes, which threads per process would oversubscribe.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    try:
        try:
            return moderngl.create_standalone_context(backend="egl", require=330)
        except Exception:  # no unversioned libGL.so / libEGL.so (they come with -dev packages)
            return moderngl.create_standalone_context(
                backend="egl", require=330, libgl="libGL.so.1", libegl="libEGL.so.1"
            )
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RendererError(
            f"cannot create a headless OpenGL 3.3 context with EGL ({reason}); "
            f"install Mesa EGL: {EGL_INSTALL_HINT}"
        ) from e


def _no_flush() -> None:
    pass


def _gl_flush_function() -> Callable[[], None]:
    """``glFlush`` of the calling thread's current context (moderngl does not expose it).

    A flush hands the triangles set up so far to llvmpipe's raster threads, which then work
    while the main thread sets up the rest. It only changes timing, so a missing library
    gives a no-op.
    """
    for name in ("libGL.so.1", "libOpenGL.so.0"):
        try:
            flush = ctypes.CDLL(name).glFlush
        except (OSError, AttributeError):
            continue
        flush.restype, flush.argtypes = None, []
        return flush
    return _no_flush


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


def _closed_instances(
    positions: np.ndarray, tri_instance: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Find the instances whose triangles form closed, consistently wound surfaces.

    Seen from outside such a surface its back faces are always hidden behind its front
    faces, so they can be culled. An instance is closed when, after welding equal vertex
    positions, every directed edge appears once and its reverse appears once, and its
    signed volume is not zero; a negative volume (wound inwards) is fixed by flipping it.

    Args:
        positions: (3T, 3) triangle soup.
        tri_instance: (T,) instance id of each triangle.

    Returns:
        cull: (T,) bool, the triangle belongs to a closed instance; flip: (T,) bool, its
        winding must be reversed to face outwards; lo, hi: (K, 3) bounds of the K closed
        instances.
    """
    n_tri = len(tri_instance)
    none = np.zeros(n_tri, dtype=bool)
    empty = np.zeros((0, 3))
    pos = np.ascontiguousarray(positions, dtype=np.float32)
    _, vertex = np.unique(pos.view(np.dtype((np.void, 12))).ravel(), return_inverse=True)
    vertex = vertex.reshape(n_tri, 3).astype(np.int64)
    _, inst = np.unique(tri_instance, return_inverse=True)
    inst = inst.astype(np.int64)
    n_inst = int(inst.max()) + 1
    if vertex.max() >= 1 << 21 or n_inst >= 1 << 21:  # keys would not fit in 63 bits
        return none, none.copy(), empty, empty
    a, b = vertex, np.roll(vertex, -1, axis=1)  # directed edges v0v1, v1v2, v2v0: (T, 3)
    owner = np.repeat(inst, 3)
    key = ((inst[:, None] << 42) | (a << 21) | b).ravel()
    reverse = ((inst[:, None] << 42) | (b << 21) | a).ravel()
    ordered = np.sort(key)
    open_instance = np.zeros(n_inst, dtype=bool)
    open_instance[inst[(a == b).any(axis=1)]] = True  # degenerate triangles
    open_instance[ordered[1:][ordered[1:] == ordered[:-1]] >> 42] = True  # repeated edges
    at = np.minimum(np.searchsorted(ordered, reverse), len(ordered) - 1)
    open_instance[owner[ordered[at] != reverse]] = True  # edges without a twin
    tri = pos.reshape(-1, 3, 3).astype(np.float64)
    signed = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0
    volume = np.bincount(inst, weights=signed, minlength=n_inst)
    closed = ~open_instance & (np.abs(volume) > 1e-12)
    cull = closed[inst]
    flip = cull & (volume[inst] < 0)
    lo = np.full((n_inst, 3), np.inf)
    hi = np.full((n_inst, 3), -np.inf)
    np.minimum.at(lo, inst, tri.min(axis=1))
    np.maximum.at(hi, inst, tri.max(axis=1))
    return cull, flip, lo[closed], hi[closed]


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Put two zero bits between the 10 low bits of each value (for 3-D Morton codes)."""
    v = v.astype(np.uint64) & np.uint64(0x3FF)
    v = (v | (v << np.uint64(16))) & np.uint64(0x030000FF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x0300F00F)
    v = (v | (v << np.uint64(4))) & np.uint64(0x030C30C3)
    v = (v | (v << np.uint64(2))) & np.uint64(0x09249249)
    return v


def _spatial_chunks(
    positions: np.ndarray, bucket: np.ndarray, chunk_triangles: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut triangles into small, spatially compact chunks for per-view culling.

    Triangles are sorted by ``bucket`` (chunks never mix buckets), then along a Morton curve
    of their centres, and cut into runs of at most ``chunk_triangles``.

    Returns:
        order: (T,) triangle permutation; starts: (M,) first triangle of each chunk in the
        new order; bucket_starts: (B + 1,) first chunk of each bucket 0 .. B - 1 and the
        chunk count; lo, hi: (M, 3) chunk bounds.
    """
    tri = positions.reshape(-1, 3, 3).astype(np.float64)
    tmin, tmax = tri.min(axis=1), tri.max(axis=1)
    centre = (tmin + tmax) / 2
    scene_lo, scene_hi = tmin.min(axis=0), tmax.max(axis=0)
    cell = np.clip((centre - scene_lo) / np.maximum(scene_hi - scene_lo, 1e-9), 0, 1) * 1023
    code = _spread_bits(cell[:, 0]) | (_spread_bits(cell[:, 1]) << np.uint64(1))
    code |= _spread_bits(cell[:, 2]) << np.uint64(2)
    order = np.lexsort((code, bucket))
    n_buckets = int(bucket.max()) + 1
    bounds = np.searchsorted(bucket[order], np.arange(n_buckets + 1))
    runs = [np.arange(a, b, chunk_triangles) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    starts = np.concatenate(runs).astype(np.int64)
    bucket_starts = np.cumsum([0] + [len(r) for r in runs])
    lo = np.minimum.reduceat(tmin[order], starts, axis=0)
    hi = np.maximum.reduceat(tmax[order], starts, axis=0)
    return order, starts, bucket_starts, lo, hi


class Renderer:
    """Headless OpenGL renderer of a static triangle soup, for one thread.

    Args:
        width, height: image size in pixels.
        hfov: horizontal field of view in degrees (pixels are square, as in Habitat).
        near, far: clipping distances in metres; anything beyond ``far`` is background.
        ambient: share of the light that does not depend on the surface orientation.
        light_dir: direction towards a directional light (world coordinates).
        background: RGB colour (0-255) of pixels where nothing was hit.

    ``set_shading`` (palette, coloured light, procedural textures: rendering domains) and
    ``set_hfov`` change how the next frames are drawn; depth and instance ids never depend
    on the shading.

    Outputs of ``render``: ``rgb`` uint8 (H, W, 3), ``depth`` float32 (H, W) planar z-depth
    in metres along the optical axis, ``semantic`` int32 (H, W) instance ids; depth and
    semantic are 0 where nothing was hit. Returned arrays are fresh, never reused.

    Threads and processes: a GL context works only in the thread that created it (used from
    another thread it silently returns blank frames), so every method checks the thread and
    raises ``RuntimeError``; create one ``Renderer`` per thread or process. Forking a process
    after a context exists hangs the child: worker processes must be started with the
    ``"spawn"`` start method (``multiprocessing.get_context("spawn")``). Several renderers
    in one thread are fine. On CPU machines the first ``Renderer`` of a process sets
    ``LP_NUM_THREADS=0`` unless it is set (llvmpipe then rasterises in the calling thread):
    run one worker process per core for throughput.

    Example:
        >>> with Renderer(128, 128) as r:  # doctest: +SKIP
        ...     r.set_geometry(*Renderer.geometry_from_meshes(meshes))
        ...     pano = r.render_views(eye, [i * math.pi / 6 for i in range(12)])
        >>> pano["rgb"].shape  # doctest: +SKIP
        (12, 128, 128, 3)
    """

    chunk_triangles = 64  # triangles per frustum-culling chunk (read by set_geometry)
    flush_commands = 48  # chunks between two flushes, with llvmpipe raster threads only

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
        light = tuple(float(v) for v in np.asarray(light_dir, dtype=np.float64).reshape(-1))
        shading = Shading(light_dir=light, ambient=float(ambient))  # type: ignore[arg-type]
        if len(background) != 3:
            raise ValueError(f"background must be an RGB triple, got {background}")

        self.width, self.height = int(width), int(height)
        self.near, self.far = float(near), float(far)
        self.background = tuple(int(c) for c in background)
        self._shading = shading
        self._variant = shading.variant
        self._set_frustum(float(hfov))

        self._thread = threading.get_ident()
        self._closed = False
        self._ctx = _create_context()
        import moderngl

        self._mgl = moderngl
        with self._ctx:
            self._ctx.enable(moderngl.DEPTH_TEST)
            self._ctx.disable(moderngl.CULL_FACE)
            self._ctx.cull_face = "back"
            self._ctx.front_face = "cw"  # counter-clockwise in eye space: the y flip mirrors it
            self.gl_renderer = str(self._ctx.info["GL_RENDERER"])  # e.g. "llvmpipe (LLVM 15...)"
        # Flushing part-way through a frame only pays when llvmpipe has raster threads.
        threaded = "llvmpipe" in self.gl_renderer and os.environ.get("LP_NUM_THREADS") != "0"
        self._flush = _gl_flush_function() if threaded else _no_flush
        try:
            import cv2

            self._cv2: Any = cv2
        except ImportError:  # pragma: no cover - opencv is a core dependency
            self._cv2 = None
        # glMultiDrawArraysIndirect (GL 4.3; llvmpipe has it): all visible chunks in one call.
        self._use_indirect = self._ctx.version_code >= 430
        self._indirect: Any = None
        # programs and vertex arrays by (sensors, shader variant)
        self._programs: dict[tuple[tuple[str, ...], str], tuple[Any, dict[str, Any]]] = {}
        self._vaos: dict[tuple[tuple[str, ...], str], Any] = {}
        self._targets: dict[int, dict[str, Any]] = {}  # views -> textures and framebuffers
        self._buffers: list[Any] = []
        self._n_vertices = 0

    def _set_frustum(self, hfov: float) -> None:
        """Projection and culling planes for a horizontal field of view of ``hfov`` degrees."""
        self.hfov = hfov
        tan_x = math.tan(math.radians(self.hfov) / 2)
        self._tan_half_fov = (tan_x, tan_x * self.height / self.width)
        # Inward frustum planes in eye space, n . p + o >= 0 inside:
        # left, right, bottom, top, near, far (the camera looks along -z).
        tx, ty = self._tan_half_fov
        self._plane_normals = np.array(
            [[1, 0, -tx], [-1, 0, -tx], [0, 1, -ty], [0, -1, -ty], [0, 0, -1], [0, 0, 1]]
        )
        self._plane_offsets = np.array([0.0, 0.0, 0.0, 0.0, -self.near, self.far])
        # Within this distance of a closed mesh the near plane may cut its front faces away.
        self._near_reach = self.near * math.sqrt(1 + tx * tx + ty * ty) + 1e-3
        self._proj = self._projection_bytes()

    # ------------------------------------------------------------------ domains

    @property
    def shading(self) -> Shading:
        return self._shading

    def set_shading(self, shading: Shading) -> None:
        """Colour and light the surfaces as ``shading`` says (the next frames on)."""
        self._check_thread()
        self._shading = shading
        self._variant = shading.variant
        with self._ctx:
            for prog, _ in self._programs.values():
                self._write_shading(prog)

    def set_hfov(self, hfov: float) -> None:
        """Change the horizontal field of view (degrees) of the next frames."""
        self._check_thread()
        if not 0.0 < hfov < 180.0:
            raise ValueError(f"hfov must be in (0, 180) degrees, got {hfov}")
        if float(hfov) == self.hfov:
            return
        self._set_frustum(float(hfov))
        with self._ctx:
            for prog, _ in self._programs.values():
                prog["u_proj"].write(self._proj)

    def _write_shading(self, prog: Any) -> None:
        sh = self._shading
        if "u_light" not in prog:  # lighting is compiled out when RGB is not requested
            return
        light = np.asarray(sh.light_dir, dtype=np.float64)
        prog["u_light"].value = tuple(float(v) for v in light / np.linalg.norm(light))
        prog["u_ambient"].value = float(sh.ambient)
        if "u_palette" in prog:
            # GLSL matrices are column-major: the transpose of the row-major tuple
            matrix = np.asarray(sh.colour_matrix, dtype=np.float32).reshape(3, 3)
            prog["u_palette"].write(np.ascontiguousarray(matrix.T).tobytes())
        if "u_light_rgb" in prog:
            prog["u_light_rgb"].value = tuple(float(v) for v in sh.light_rgb)
        if "u_tex_contrast" in prog:
            prog["u_tex_contrast"].value = float(sh.texture_contrast)
            prog["u_tex_scale"].value = float(sh.texture_scale)

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
        fx = 1.0 / self._tan_half_fov[0]
        fy = 1.0 / self._tan_half_fov[1]
        n, f = self.near, self.far
        proj = np.zeros((4, 4), dtype=np.float32)
        proj[0, 0] = fx
        proj[1, 1] = -fy  # flipped: GL's bottom-up readback then comes out top row first
        proj[2, 2] = (f + n) / (n - f)
        proj[2, 3] = 2.0 * f * n / (n - f)
        proj[3, 2] = -1.0
        return proj.T.tobytes()  # GL wants column-major

    def _key(self, sensors: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
        """Programs and vertex arrays are per sensor set and shader variant (RGB only)."""
        return sensors, self._variant if "rgb" in sensors else "plain"

    def _program(self, sensors: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
        """The shader program writing exactly ``sensors`` (attachment i = sensors[i])."""
        key = self._key(sensors)
        if key not in self._programs:
            defines = "".join(f"#define OUT_{name.upper()} {i}\n" for i, name in enumerate(sensors))
            variant = {"plain": "", "shaded": "SHADED", "textured": "SHADED TEXTURED"}[key[1]]
            shared = "".join(f"#define {name}\n" for name in variant.split())
            head = "#version 330\n"
            fragment = _FRAGMENT_SHADER.replace(head, head + shared + defines, 1)
            vertex = _VERTEX_SHADER.replace(head, head + shared, 1)
            prog = self._ctx.program(vertex_shader=vertex, fragment_shader=fragment)
            prog["u_proj"].write(self._proj)
            self._write_shading(prog)
            uniforms = {"view": prog["u_view"], "eye": prog.get("u_eye", None)}
            self._programs[key] = (prog, uniforms)
        return self._programs[key]

    def _vao(self, sensors: tuple[str, ...]) -> Any:
        key = self._key(sensors)
        if key not in self._vaos:
            prog, _ = self._program(sensors)
            vertices, ids, materials = self._buffers
            # The compiler drops attributes a variant does not use (no ids for RGB only):
            # skip those with padding so that the interleaved layout stays the same.
            fmt, names = [], []
            for name in ("in_position", "in_color", "in_normal"):
                fmt.append("3f" if name in prog else "12x")
                names += [name] if name in prog else []
            content = [(vertices, " ".join(fmt), *names)]
            if "in_id" in prog:
                content.append((ids, "1i", "in_id"))
            if "in_material" in prog:
                content.append((materials, "1i", "in_material"))
            self._vaos[key] = self._ctx.vertex_array(prog, content)
        return self._vaos[key]

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
        # One clear value goes to every attachment, written as raw bits into the integer
        # one, so ids and depth are cleared with 0 and a coloured background on its own.
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        if "rgb" in sensors and any(self.background):
            r, g, b = (c / 255.0 for c in self.background)
            self._framebuffer(target, ("rgb",)).clear(r, g, b, 1.0, depth=1.0)
            fbo.use()

    # ------------------------------------------------------------------ geometry

    def set_geometry(
        self,
        positions: np.ndarray,
        colors: np.ndarray,
        instance_ids: np.ndarray,
        normals: np.ndarray | None = None,
        materials: np.ndarray | None = None,
    ) -> None:
        """Replace the scene with a non-indexed triangle soup.

        Args:
            positions: (N, 3) vertex positions in metres, N % 3 == 0, 3 rows per triangle.
            colors: (N, 3) vertex colours in [0, 1].
            instance_ids: (N,) positive int32 instance ids (what ``semantic`` reports; a
                triangle reports the id of its last vertex).
            normals: (N, 3) vertex normals for the lighting; flat face normals when None.
            materials: (N,) surface material codes of the procedural textures
                (``Shading.textures``; 0 smooth when None); a triangle takes its last vertex's.
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
        materials = np.zeros(n, np.int32) if materials is None else np.asarray(materials)
        if materials.shape != (n,):
            raise ValueError(f"materials must be {(n,)}, got {materials.shape}")

        with self._ctx:
            for vao in self._vaos.values():
                vao.release()
            for buf in self._buffers:
                buf.release()
        self._vaos.clear()
        self._buffers = []
        self._n_vertices = n
        if n == 0:
            return

        # Four buckets of chunks, drawn in this order: 0 closed and large, 1 open and large,
        # 2 closed and small, 3 open and small. Closed meshes are drawn with their back
        # faces culled. Large triangles (longest side over 1 m: floors, walls) have chunks
        # of their own so that they do not inflate the boxes of small-object chunks, and,
        # drawn first, they hide what is behind them from the fragment shader early.
        cull, flip, self._closed_lo, self._closed_hi = _closed_instances(positions, ids[2::3])
        tri = positions.reshape(-1, 3, 3)
        small = (tri.max(axis=1) - tri.min(axis=1)).max(axis=1) <= 1.0
        bucket = 2 * small.astype(np.int64) + ~cull
        order, starts, bucket_starts, lo, hi = _spatial_chunks(
            positions, bucket, self.chunk_triangles
        )
        self._bucket_starts = np.zeros(5, dtype=np.int64)
        self._bucket_starts[: len(bucket_starts)] = bucket_starts
        self._bucket_starts[len(bucket_starts) :] = bucket_starts[-1]
        corner = np.tile(np.arange(3), (len(order), 1))
        corner[flip[order]] = (0, 2, 1)  # inward-wound closed meshes: reverse the winding
        vertex_order = (3 * order[:, None] + corner).reshape(-1)
        # Centre and half size of each chunk's box, a hair larger: never cull a touching one.
        self._chunk_boxes = np.concatenate([(lo + hi) / 2, (hi - lo) / 2 + 1e-4], axis=1)
        # One indirect draw command per chunk: count, instances, first, base instance and a
        # padding word (moderngl reads the commands with a 20-byte stride).
        counts = np.diff(np.append(starts, len(order)))
        table = np.zeros((len(starts), 5), dtype=np.uint32)
        table[:, 0] = 3 * counts
        table[:, 1] = 1
        table[:, 2] = 3 * starts
        self._chunk_commands = table

        vertices = np.concatenate([positions, np.clip(colors, 0.0, 1.0), normals], axis=1)
        with self._ctx:
            self._buffers = [
                self._ctx.buffer(np.ascontiguousarray(vertices[vertex_order], dtype=np.float32)),
                self._ctx.buffer(np.ascontiguousarray(ids[vertex_order], dtype=np.int32)),
                self._ctx.buffer(np.ascontiguousarray(materials[vertex_order], dtype=np.int32)),
            ]

    def _visible_chunks(
        self, eye: np.ndarray, yaws: Sequence[float], pitch: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The (view, chunk) pairs whose box meets the view's frustum, sorted by view, chunk.

        Each eye-space frustum plane n . p + o >= 0 is turned to the world, n_w = R n with
        R = R_y(yaw) R_x(pitch), o_w = o - n_w . eye; a box is outside when even its
        farthest corner along n_w is: n_w . centre + |n_w| . half + o_w < 0.
        """
        sp, cp = math.sin(pitch), math.cos(pitch)
        n = self._plane_normals  # (6, 3)
        px, py, pz = n[:, 0], cp * n[:, 1] - sp * n[:, 2], sp * n[:, 1] + cp * n[:, 2]
        yaw = np.asarray(yaws, dtype=np.float64)[:, None]
        sy, cy = np.sin(yaw), np.cos(yaw)
        planes = np.empty((len(yaw), 6, 7))  # per view and plane: n_w, |n_w|, o_w
        planes[:, :, 0] = cy * px + sy * pz
        planes[:, :, 1] = py
        planes[:, :, 2] = cy * pz - sy * px
        np.abs(planes[:, :, :3], out=planes[:, :, 3:6])
        planes[:, :, 6] = self._plane_offsets - planes[:, :, :3] @ eye
        planes = planes.reshape(-1, 7)
        dist = planes[:, :6] @ self._chunk_boxes.T + planes[:, 6:]  # (6 * B, M)
        return np.nonzero(dist.reshape(len(yaw), 6, -1).min(axis=1) >= 0)

    def _inside_closed_mesh(self, eye: np.ndarray) -> bool:
        """Whether the eye may see the inside of a closed mesh (then nothing is culled)."""
        reach = self._near_reach
        inside = (eye >= self._closed_lo - reach) & (eye <= self._closed_hi + reach)
        return bool(inside.all(axis=1).any())

    def _draw_chunks(
        self,
        fbo: Any,
        vao: Any,
        uniforms: dict[str, Any],
        view_matrices: list[bytes],
        view: np.ndarray,
        chunk: np.ndarray,
        cull: bool,
    ) -> None:
        """Draw the (view, chunk) pairs, view by view, bucket by bucket."""
        commands = self._chunk_commands[chunk]
        if self._use_indirect and len(commands):
            if self._indirect is None or self._indirect.size < commands.nbytes:
                if self._indirect is not None:
                    self._indirect.release()
                self._indirect = self._ctx.buffer(reserve=2 * max(commands.nbytes, 4096))
            self._indirect.write(commands)
        # bounds[i, k]: first pair of view i in bucket k (pairs are sorted by view, chunk).
        key = view * (len(self._chunk_commands) + 1) + chunk
        marks = np.arange(len(view_matrices))[:, None] * (len(self._chunk_commands) + 1)
        bounds = np.searchsorted(key, marks + self._bucket_starts).tolist()
        w, h = self.width, self.height
        pending = 0  # commands drawn since the last flush
        for i, matrix in enumerate(view_matrices):
            row = bounds[i]
            if row[0] == row[4]:
                continue
            uniforms["view"].write(matrix)
            fbo.viewport = (0, i * h, w, h)
            for k in range(4):
                if row[k] == row[k + 1]:
                    continue
                closed = cull and k % 2 == 0  # buckets 0 and 2 hold closed meshes
                if closed:
                    self._ctx.enable(self._mgl.CULL_FACE)
                pending = self._draw(vao, commands, row[k], row[k + 1], pending)
                if closed:
                    self._ctx.disable(self._mgl.CULL_FACE)
        fbo.viewport = (0, 0, w, h * len(view_matrices))

    def _draw(self, vao: Any, commands: np.ndarray, first: int, stop: int, pending: int) -> int:
        """Draw uploaded commands ``first .. stop - 1``; returns the count since the last flush.

        Every ``flush_commands`` commands a flush hands the work so far to llvmpipe's raster
        threads, which then rasterise while this thread sets up the next triangles. (Each
        flush also starts a new binning scene, which costs a little: not more often.)
        """
        while first < stop:
            n = min(stop - first, self.flush_commands - pending)
            if self._use_indirect:
                vao.render_indirect(self._indirect, self._mgl.TRIANGLES, n, first)
            else:  # GL < 4.3: one draw call per chunk
                for vertices, _, first_vertex, _, _ in commands[first : first + n].tolist():
                    vao.render(vertices=vertices, first=first_vertex)
            first, pending = first + n, pending + n
            if pending >= self.flush_commands:
                self._flush()
                pending = 0
        return pending

    # ------------------------------------------------------------------ rendering

    def render(
        self,
        position: Sequence[float],
        yaw: float,
        pitch: float = 0.0,
        sensors: Sequence[str] = SENSORS,
    ) -> dict[str, np.ndarray]:
        """Render one view from the camera eye ``position`` (x, y, z); yaw and pitch in radians.

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

        All views go into one tall framebuffer, one viewport each, and are read back once;
        each view is the same image ``render`` gives.

        Returns:
            The requested sensors stacked along a first axis of length ``len(yaws)``:
            ``rgb`` (B, H, W, 3), ``depth`` (B, H, W), ``semantic`` (B, H, W).
        """
        self._check_thread()
        sensors = _normalise_sensors(sensors)
        views = len(yaws)
        if views == 0:
            raise ValueError("yaws must not be empty")
        x, y, z = (float(v) for v in position)
        w, h = self.width, self.height
        with self._ctx:
            target = self._target(views)
            fbo = self._framebuffer(target, sensors)
            fbo.use()
            self._clear(target, sensors, fbo)
            if self._n_vertices:
                self._draw_views(fbo, sensors, np.array([x, y, z]), yaws, pitch)

            out: dict[str, np.ndarray] = {}
            if "rgb" in sensors:
                out["rgb"] = self._read_rgb(fbo, target, sensors.index("rgb"), views)
            if "depth" in sensors:
                out["depth"] = np.empty((views, h, w), dtype=np.float32)
                fbo.read_into(
                    out["depth"], components=1, attachment=sensors.index("depth"), dtype="f4"
                )
            if "semantic" in sensors:
                out["semantic"] = np.empty((views, h, w), dtype=np.int32)
                index = sensors.index("semantic")
                fbo.read_into(out["semantic"], components=1, attachment=index, dtype="i4")
        return out

    def _read_rgb(
        self, fbo: Any, target: dict[str, Any], attachment: int, views: int
    ) -> np.ndarray:
        h, w = self.height, self.width
        if self._cv2 is None:
            rgb = np.empty((views, h, w, 3), dtype=np.uint8)
            fbo.read_into(rgb, components=3, attachment=attachment)
            return rgb
        # Reading 4 channels is Mesa's fast path (10x faster than 3), and OpenCV drops the
        # alpha channel far faster than a strided numpy copy.
        if "rgba" not in target:
            target["rgba"] = np.empty((views * h, w, 4), dtype=np.uint8)
        fbo.read_into(target["rgba"], components=4, attachment=attachment)
        rgb = self._cv2.cvtColor(target["rgba"], self._cv2.COLOR_RGBA2RGB)
        return rgb.reshape(views, h, w, 3)

    def _draw_views(
        self,
        fbo: Any,
        sensors: tuple[str, ...],
        eye: np.ndarray,
        yaws: Sequence[float],
        pitch: float,
    ) -> None:
        vao = self._vao(sensors)
        _, uniforms = self._program(sensors)
        x, y, z = (float(v) for v in eye)
        if uniforms["eye"] is not None:
            uniforms["eye"].value = (x, y, z)
        sp, cp = math.sin(pitch), math.cos(pitch)
        matrices = [_view_matrix_bytes(x, y, z, float(yaw), sp, cp) for yaw in yaws]
        view, chunk = self._visible_chunks(eye, yaws, pitch)
        cull = not self._inside_closed_mesh(eye)
        self._draw_chunks(fbo, vao, uniforms, matrices, view, chunk, cull)

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

    For each square image size: single views at random positions and headings, and 12-view
    panoramas (30 degree steps), each with RGB only and with all three sensors. Panorama
    figures count panoramas, not views.

    Returns:
        A flat dict, e.g. ``{"triangles": 22760, "renderer": "llvmpipe ...",
        "128/single/rgb": 1500.0, "128/single/all": 1200.0, "128/pano12/rgb": 150.0, ...}``.
    """
    geometry = Renderer.geometry_from_meshes(meshes if meshes is not None else benchmark_house())
    lo, hi = geometry[0].min(axis=0), geometry[0].max(axis=0)
    rng = np.random.default_rng(0)
    n = 64
    eyes = np.stack(
        [
            rng.uniform(lo[0] + 0.3, hi[0] - 0.3, n),
            np.full(n, lo[1] + 1.25),
            rng.uniform(lo[2] + 0.3, hi[2] - 0.3, n),
        ],
        axis=1,
    ).tolist()
    yaws = rng.uniform(-math.pi, math.pi, n).tolist()
    pano = [i * math.pi / 6 for i in range(12)]
    result: dict[str, Any] = {"triangles": len(geometry[0]) // 3}
    for size in sizes:
        renderer = Renderer(size, size)
        try:
            renderer.set_geometry(*geometry)
            result["renderer"] = renderer.gl_renderer
            for kind in ("single", "pano12"):
                for label, sensors in (("rgb", ("rgb",)), ("all", SENSORS)):
                    count, start = -5, 0.0  # 5 warm-up calls: shader compile, framebuffers
                    while count <= 0 or time.perf_counter() - start < seconds:
                        if count == 0:
                            start = time.perf_counter()
                        eye = eyes[count % n]
                        if kind == "single":
                            renderer.render(eye, yaws[count % n], sensors=sensors)
                        else:
                            renderer.render_views(eye, pano, sensors=sensors)
                        count += 1
                    result[f"{size}/{kind}/{label}"] = count / (time.perf_counter() - start)
        finally:
            renderer.close()
    return result
