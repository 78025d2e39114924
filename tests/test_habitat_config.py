"""The Habitat backend's decisions, as pure functions: no habitat-sim needed.

Each convention test states the mistake it catches (quaternion order, y-up vs z-up,
height-before-width, template substrings), so that the habitat half cannot silently drift.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import trimesh

from vlnav import VlnavError
from vlnav.config import ConfigError, EnvConfig, ScenesConfig, SensorConfig, load_config
from vlnav.episodes import quaternion_to_yaw, rotate_vector, yaw_to_quaternion
from vlnav.sim import habitat_config as hc
from vlnav.sim.base import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT

LEFT_60 = yaw_to_quaternion(math.pi / 3)  # vlnav [x, y, z, w]: turned 60 degrees to the left


def habitat_quat_from_coeffs(coeffs):
    """habitat_sim.utils.common.quat_from_coeffs, as [w, x, y, z]: real = coeffs[3],
    imag = coeffs[0:3] (copied from habitat-sim 0.3.x)."""
    return [coeffs[3], coeffs[0], coeffs[1], coeffs[2]]


# ----------------------------------------------------------------------------- quaternions
def test_vlnav_rotation_read_by_habitat_turns_the_agent_left():
    coeffs = hc.to_habitat_coeffs(LEFT_60)
    left_60 = [-math.sin(math.pi / 3), 0.0, -math.cos(math.pi / 3)]  # from -z towards -x
    forward = hc.rotate_wxyz(habitat_quat_from_coeffs(coeffs), [0.0, 0.0, -1.0])
    assert forward == pytest.approx(left_60, abs=1e-9)
    up = hc.rotate_wxyz(habitat_quat_from_coeffs(coeffs), [0.0, 1.0, 0.0])
    assert up == pytest.approx([0.0, 1.0, 0.0], abs=1e-9)
    # the order mistake: reading [x, y, z, w] as [w, x, y, z] is a half turn about a tilted
    # axis; it happens to keep this forward vector but stands the agent on its head
    wrong_up = hc.rotate_wxyz(LEFT_60, [0.0, 1.0, 0.0])
    assert wrong_up == pytest.approx([0.0, -1.0, 0.0], abs=1e-9)


def test_wxyz_conversions_put_the_scalar_first():
    a = 0.8
    assert hc.xyzw_to_wxyz(yaw_to_quaternion(a)) == pytest.approx(
        [math.cos(a / 2), 0.0, math.sin(a / 2), 0.0]
    )
    assert hc.wxyz_to_xyzw([math.cos(a / 2), 0.0, math.sin(a / 2), 0.0]) == pytest.approx(
        yaw_to_quaternion(a)
    )
    vector, scalar = hc.magnum_parts(yaw_to_quaternion(a))
    assert vector == pytest.approx((0.0, math.sin(a / 2), 0.0)) and scalar == pytest.approx(
        math.cos(a / 2)
    )
    # identity: [0, 0, 0, 1] in vlnav, [1, 0, 0, 0] in scene-instance JSON
    assert hc.xyzw_to_wxyz([0, 0, 0, 1]) == [1.0, 0.0, 0.0, 0.0]


def test_rotations_agree_with_vlnav_episodes_helpers():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = list(rng.normal(size=4))
        v = list(rng.normal(size=3))
        assert hc.rotate_wxyz(hc.xyzw_to_wxyz(q), v) == pytest.approx(rotate_vector(q, v))
    for yaw in np.linspace(-3.1, 3.1, 13):
        q = yaw_to_quaternion(float(yaw))
        assert hc.heading_from_wxyz(hc.xyzw_to_wxyz(q)) == pytest.approx(quaternion_to_yaw(q))
    assert hc.wrap_angle(-math.pi) == math.pi and hc.wrap_angle(3 * math.pi / 2) == pytest.approx(
        -math.pi / 2
    )


def test_bad_quaternions_are_one_line_errors():
    for bad in ([0, 0, 0, 0], [1, 2, 3], [math.nan, 0, 0, 1]):
        with pytest.raises(VlnavError) as e:
            hc.to_habitat_coeffs(bad)
        assert "\n" not in str(e.value)


# ---------------------------------------------------------------- episode <-> agent state
def test_episode_start_round_trips_through_a_habitat_agent_state():
    start_position, start_rotation = [1.5, 0.0, -2.25], yaw_to_quaternion(-2.0)
    position, coeffs = hc.start_state(start_position, start_rotation)
    assert position == start_position and coeffs == pytest.approx(start_rotation)
    # habitat hands back quat_to_coeffs(rotation): the same [x, y, z, w]
    state = hc.agent_state_from_habitat(np.array(position, np.float32), coeffs, collided=True)
    assert state.heading == pytest.approx(-2.0)
    assert state.rotation == pytest.approx(start_rotation)
    assert state.position == pytest.approx(start_position) and state.collided
    # a heading in radians is accepted too, as the builtin backend does
    assert hc.start_state(start_position, -2.0)[1] == pytest.approx(start_rotation)
    with pytest.raises(VlnavError):
        hc.start_state([1.0, 2.0], start_rotation)


def test_actions_map_to_habitat_control_names():
    assert hc.habitat_action(STOP) is None
    assert hc.habitat_action(MOVE_FORWARD) == "move_forward"
    assert hc.habitat_action(TURN_LEFT) == "turn_left"  # habitat: rotate +angle about +y
    assert hc.habitat_action(TURN_RIGHT) == "turn_right"
    settings = hc.habitat_settings(EnvConfig())
    for key in filter(None, hc.ACTION_KEYS.values()):
        assert settings.actions[key][0] == key
    with pytest.raises(VlnavError, match="unknown action 7"):
        hc.habitat_action(7)


# ---------------------------------------------------------------------------- stage frames
def test_vlnav_stage_frame_is_the_identity_in_habitat():
    cfg = hc.stage_config("house.glb")
    r = hc.asset_to_world_rotation(cfg["up"], cfg["front"])
    assert r == pytest.approx(np.eye(3))
    ceiling_corner = np.array([8.0, 2.6, 3.0])
    assert r @ ceiling_corner == pytest.approx(ceiling_corner)  # still 2.6 m up


def test_a_bare_glb_stage_would_tip_the_house_over():
    r = hc.asset_to_world_rotation(hc.HABITAT_GLB_DEFAULT_UP, hc.HABITAT_GLB_DEFAULT_FRONT)
    assert np.linalg.det(r) == pytest.approx(1.0)
    # habitat's default for .glb (z up): vlnav's ceiling (y = 2.6) ends up on the floor plane
    assert r @ np.array([0.0, 2.6, 0.0]) == pytest.approx([0.0, 0.0, -2.6])
    with pytest.raises(VlnavError, match="orthogonal"):
        hc.asset_to_world_rotation([0, 1, 0], [0, 1, 1])


# ------------------------------------------------------------------------- scene files
def test_scene_files_place_every_instance_with_its_semantic_id(two_room_spec):
    instances = {i: info["category"] for i, info in two_room_spec.instances().items()}
    files = hc.habitat_scene_files("tiny_0000", instances)
    scene = files["scenes/tiny_0000.scene_instance.json"]
    assert scene["stage_instance"]["template_name"] == "stages/tiny_0000"
    assert "stages/tiny_0000.stage_config.json" in files
    assert len(scene["object_instances"]) == len(instances)
    for inst in scene["object_instances"]:
        assert inst["motion_type"] == "STATIC" and inst["translation"] == [0.0, 0.0, 0.0]
        # scene-instance rotations are [w, x, y, z]: the identity must leave vectors alone
        assert hc.rotate_wxyz(inst["rotation"], [0.0, 0.0, -1.0]) == pytest.approx([0, 0, -1])
        assert hc.rotate_wxyz(inst["rotation"], [0.0, 1.0, 0.0]) == pytest.approx([0, 1, 0])
    for iid, category in instances.items():
        stem = hc.object_stem(iid, category)
        obj = files[f"objects/{stem}.object_config.json"]
        assert obj["semantic_id"] == iid and obj["render_asset"] == f"{stem}.glb"
        assert (obj["up"], obj["front"]) == ([0.0, 1.0, 0.0], [0.0, 0.0, -1.0])
        assert obj["COM"] == [0.0, 0.0, 0.0]  # no re-centring on the bounding box
    stage = files["stages/tiny_0000.stage_config.json"]
    assert (stage["up"], stage["front"]) == ([0.0, 1.0, 0.0], [0.0, 0.0, -1.0])
    assert files["tiny_0000.scene_dataset_config.json"]["objects"]["paths"] == {
        ".json": ["objects"]
    }


def test_template_names_are_unique_under_habitats_substring_lookup():
    # habitat-sim resolves template_name by substring of the registered handle
    instances = {5: "lamp", 15: "floor lamp", 50: "lamp", 150: "lamp", 1500: "wall", 7: "amp"}
    files = hc.habitat_scene_files("house_0001", instances)
    handles = [f"/data/house_0001/habitat/{p}" for p in files if p.startswith("objects/")]
    handles += [h.removesuffix(".object_config.json") for h in handles]
    for iid, category in instances.items():
        name = hc.object_template_name(iid, category)
        matches = {h.removesuffix(".object_config.json") for h in handles if name in h}
        assert matches == {f"/data/house_0001/habitat/{name}"}, name
    light = files["scenes/house_0001.scene_instance.json"]["default_lighting"]
    assert [p for p in files if light in p] == [f"lights/{hc.LIGHT_SETUP}.lighting_config.json"]


def test_lighting_is_explicit_and_comes_from_above():
    lights = hc.lighting_config()["lights"]
    assert lights and sum(v["intensity"] for v in lights.values()) > 1.0
    for light in lights.values():
        assert light["type"] == "directional" and light["position_model"] == "global"
        assert light["direction"][1] < 0  # travels downwards, as habitat's default lights


def test_write_habitat_scene_keeps_world_coordinates(two_room_spec, tmp_path):
    from vlnav.scenes.mesh import SLAB, build_meshes

    out = tmp_path / "habitat"
    scene = hc.write_habitat_scene(two_room_spec, out)
    assert scene.scene_id == "tiny_0000" and scene.dataset_config.endswith(
        "tiny_0000.scene_dataset_config.json"
    )
    instances = two_room_spec.instances()
    for iid, mesh in build_meshes(two_room_spec):
        glb = out / "objects" / f"{hc.object_stem(iid, instances[iid]['category'])}.glb"
        loaded = trimesh.load(glb, force="mesh", process=False)
        assert loaded.bounds == pytest.approx(mesh.bounds, abs=1e-5)  # placed as in the house
        assert len(loaded.vertices) == 3 * len(loaded.faces)  # flat shading
    foundation = trimesh.load(out / "stages" / "tiny_0000_foundation.glb", force="mesh")
    assert foundation.bounds[1][1] == pytest.approx(-SLAB)  # hidden under the floor slabs
    for rel in ("scenes/tiny_0000.scene_instance.json", "lights/vlnav_lights.lighting_config.json"):
        json.loads((out / rel).read_text())
    # deterministic, and skipped when up to date; a changed house is rewritten
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    stamp_time = (out / "source.sha1").stat().st_mtime_ns
    hc.write_habitat_scene(two_room_spec, out)
    assert (out / "source.sha1").stat().st_mtime_ns == stamp_time
    (out / "source.sha1").unlink()
    hc.write_habitat_scene(two_room_spec, out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    two_room_spec.objects[0].rgb = [1, 2, 3]
    hc.write_habitat_scene(two_room_spec, out)
    assert (out / "source.sha1").read_bytes() != before[out / "source.sha1"]


# -------------------------------------------------------------------------------- settings
def test_settings_follow_the_env():
    cfg = EnvConfig(sensor=SensorConfig(width=64, height=48, hfov=79.0, camera_height=1.25))
    s = hc.habitat_settings(cfg)
    assert [x.uuid for x in s.sensors] == ["rgb", "depth", "semantic"]
    assert [x.sensor_type for x in s.sensors] == ["COLOR", "DEPTH", "SEMANTIC"]
    for x in s.sensors:
        assert x.resolution == (48, 64)  # habitat's order: height, width
        assert x.position == (0.0, 1.25, 0.0) and x.hfov == 79.0
    assert s.actions == {
        "move_forward": ("move_forward", 0.25),
        "turn_left": ("turn_left", 15.0),
        "turn_right": ("turn_right", 15.0),
    }
    assert (s.agent_radius, s.agent_height) == (0.18, 0.88)
    assert s.allow_sliding and s.recompute_navmesh
    assert s.navmesh["agent_radius"] == 0.18 and s.navmesh["agent_height"] == 0.88
    assert s.navmesh["include_static_objects"]  # walls and furniture are static objects
    assert hc.habitat_settings(cfg, sensors=()).sensors == ()
    ext = EnvConfig(scenes=ScenesConfig(procedural=False), habitat={"navmesh": {"cell_size": 0.1}})
    s = hc.habitat_settings(ext)
    assert not s.recompute_navmesh and s.navmesh["cell_size"] == 0.1


@pytest.mark.parametrize(
    "habitat, message",
    [
        ({"allow_slidng": True}, "unknown config key 'habitat.allow_slidng'"),
        ({"allow_sliding": "yes"}, "habitat.allow_sliding='yes' should be bool"),
        ({"gpu_device_id": True}, "habitat.gpu_device_id=True should be int"),
        ({"navmesh": {"radius": 0.2}}, "unknown config key 'habitat.navmesh.radius'"),
    ],
)
def test_bad_habitat_keys_name_the_key(habitat, message):
    with pytest.raises(ConfigError) as e:
        hc.habitat_settings(EnvConfig(habitat=habitat))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_shipped_habitat_envs():
    r2r = load_config(EnvConfig, "envs/habitat-r2r-ce.yaml", ["data_dir=/data/vlnce"])
    assert r2r.backend == "habitat" and not r2r.scenes.procedural
    assert str(r2r.scenes_dir) == "/data/vlnce/scene_datasets/mp3d"
    assert str(r2r.episodes_path("val_unseen")) == (
        "/data/vlnce/datasets/R2R_VLNCE_v1-3_preprocessed/val_unseen/val_unseen.json.gz"
    )
    assert not hc.habitat_settings(r2r).recompute_navmesh
    proc = load_config(EnvConfig, "envs/habitat-procedural.yaml")
    base = load_config(EnvConfig, "envs/procedural.yaml")
    assert proc.backend == "habitat" and proc.scenes.procedural
    # the same houses and episodes as the builtin env
    assert (proc.data_dir, proc.scenes, proc.episodes, proc.agent, proc.sensor) == (
        base.data_dir,
        base.scenes,
        base.episodes,
        base.agent,
        base.sensor,
    )
    assert (proc.scenes_dir, proc.episodes_path("train")) == (
        base.scenes_dir,
        base.episodes_path("train"),
    )


# ---------------------------------------------------------------------------- observations
def test_observations_become_vlnavs_shapes_and_dtypes():
    h, w = 3, 5
    raw = {
        "rgb": np.full((h, w, 4), 200, np.uint8),
        "depth": np.full((h, w, 1), 1.5, np.float32),
        "semantic": np.full((h, w), 42, np.uint32),
        "collided": False,
    }
    obs = hc.convert_observations(raw, ("rgb", "depth", "semantic"))
    assert obs["rgb"].shape == (h, w, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (h, w) and obs["depth"].dtype == np.float32
    assert obs["semantic"].shape == (h, w) and obs["semantic"].dtype == np.int32
    assert obs["semantic"][0, 0] == 42 and obs["depth"][0, 0] == 1.5
    assert set(hc.convert_observations(raw, ("depth",))) == {"depth"}


def test_objects_from_semantic_annotations():
    entries = [
        {"semantic_id": 3, "category": "Chair", "center": np.array([1, 0.5, 2]), "region": "0_1"},
        {"semantic_id": 3, "category": "table", "center": [0, 0, 0]},
        {"semantic_id": 4, "category": "", "center": [0, 0, 0]},
        {"semantic_id": -1, "category": "wall", "center": [0, 0, 0]},
        {"semantic_id": 9, "category": "wall", "center": [2, 1, 3], "region_category": "kitchen"},
    ]
    objects = hc.objects_from_semantic_scene(entries)
    assert set(objects) == {3, 9}
    assert objects[3]["category"] == "chair" and objects[3]["position"] == [1.0, 0.5, 2.0]
    assert objects[3]["room"] == "0_1" and objects[9]["room_type"] == "kitchen"


# ---------------------------------------------------------------------------- external data
def _r2r_env(tmp_path) -> EnvConfig:
    return load_config(EnvConfig, "envs/habitat-r2r-ce.yaml", [f"data_dir={tmp_path}"])


def test_missing_downloads_say_what_to_get_and_where(tmp_path):
    cfg = _r2r_env(tmp_path)
    with pytest.raises(VlnavError) as e:
        hc.check_external_data(cfg, "val_unseen")
    msg = str(e.value)
    assert "\n" not in msg and "Matterport3D" in msg and "download_mp.py --task habitat" in msg
    assert str(tmp_path / "scene_datasets" / "mp3d") in msg
    scan = tmp_path / "scene_datasets" / "mp3d" / "zsNo4HB9uLZ" / "zsNo4HB9uLZ.glb"
    scan.parent.mkdir(parents=True)
    scan.write_bytes(b"glTF")
    with pytest.raises(VlnavError) as e:
        hc.check_external_data(cfg, "val_unseen")
    msg = str(e.value)
    assert "\n" not in msg and "R2R_VLNCE_v1-3_preprocessed" in msg and "VLN-CE" in msg
    assert str(tmp_path / "datasets") in msg
    hc.check_external_data(cfg)  # no split: only the scenes are needed
    hc.check_external_data(EnvConfig(data_dir=str(tmp_path / "none")), "train")  # procedural
    # scenes: a scan by its R2R-CE scene_id, with the "default" dataset unless mp3d's is there
    target = hc.resolve_scene(cfg, "mp3d/zsNo4HB9uLZ/zsNo4HB9uLZ.glb")
    assert (target.dataset_config, target.scene_id) == ("default", str(scan))
    (scan.parents[1] / "mp3d.scene_dataset_config.json").write_text("{}")
    assert hc.resolve_scene(cfg, "zsNo4HB9uLZ").dataset_config.endswith(
        "mp3d.scene_dataset_config.json"
    )
    with pytest.raises(VlnavError, match="scene 'mp3d/X/X.glb' not found"):
        hc.resolve_scene(cfg, "mp3d/X/X.glb")


def test_evaluate_reports_missing_r2r_ce_data(tmp_path):
    from vlnav.evaluate import evaluate

    with pytest.raises(VlnavError, match="download R2R_VLNCE_v1-3_preprocessed|Matterport3D"):
        evaluate(_r2r_env(tmp_path), "oracle", "val_unseen", progress=False)


def test_resolve_scene_writes_a_procedural_house_once(tiny_env):
    target = hc.resolve_scene(tiny_env, "tiny_0000/tiny_0000.glb")
    folder = tiny_env.scenes_dir / "tiny_0000" / "habitat"
    assert target.scene_id == "tiny_0000"
    assert target.dataset_config == str((folder / "tiny_0000.scene_dataset_config.json").resolve())
    assert (folder / "scenes" / "tiny_0000.scene_instance.json").is_file()


# ------------------------------------------------------------------ without habitat-sim
@pytest.fixture
def no_habitat_sim(monkeypatch):
    """Make `import habitat_sim` fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "habitat_sim", None)


def test_constructing_without_habitat_sim_gives_the_install_hint(no_habitat_sim):
    from vlnav.sim.base import make_simulator
    from vlnav.sim.habitat import HabitatSimulator

    for make in (lambda: HabitatSimulator(EnvConfig()), lambda: make_simulator("habitat")):
        with pytest.raises(VlnavError) as e:
            make()
        assert hc.INSTALL_HINT in str(e.value) and "\n" not in str(e.value)


def test_cli_eval_sim_habitat_without_habitat_sim_is_one_line(no_habitat_sim, tmp_path, capsys):
    from vlnav.cli import main

    rc = main(["eval", "--sim", "habitat", "--set", f"data_dir={tmp_path / 'data'}"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vlnav: error:") and hc.INSTALL_HINT in err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "data").exists()  # failed before generating any houses


# -------------------------------------------- the thin layer, against a habitat-sim stand-in
class _Quat:
    """numpy-quaternion's role in habitat-sim: w + xi + yj + zk."""

    def __init__(self, w, x, y, z):
        self.w, self.x, self.y, self.z = w, x, y, z

    def __mul__(self, o):
        return _Quat(
            self.w * o.w - self.x * o.x - self.y * o.y - self.z * o.z,
            self.w * o.x + self.x * o.w + self.y * o.z - self.z * o.y,
            self.w * o.y - self.x * o.z + self.y * o.w + self.z * o.x,
            self.w * o.z + self.x * o.y - self.y * o.x + self.z * o.w,
        )


def _fake_habitat_sim(grid, spec):
    """A stand-in with habitat-sim 0.3.x's API surface (names and conventions read from its
    source: coeffs are [x, y, z, w], turn_left rotates +amount degrees about +y in the local
    frame, move_forward goes along the body's -z through the navmesh step filter), a vlnav
    NavGrid as its navmesh. It checks that the thin layer drives that API as documented."""
    from types import SimpleNamespace as NS

    def quat_from_coeffs(c):
        return _Quat(c[3], c[0], c[1], c[2])

    def quat_to_coeffs(q):
        return np.array([q.x, q.y, q.z, q.w])

    class Settings:  # SimulatorConfiguration, NavMeshSettings, CameraSensorSpec, ShortestPath
        def set_defaults(self):
            self.defaults = True

    class AgentState:
        def __init__(self):
            self.position, self.rotation = np.zeros(3), _Quat(1, 0, 0, 0)

    class PathFinder:
        is_loaded = True

        def snap_point(self, p):
            q = grid.snap(p, max_dist=1.0)
            return np.array(q if q else [np.nan] * 3, dtype=np.float32)

        def is_navigable(self, p):
            return grid.is_navigable(p)

        def find_path(self, path):
            a, b = path.requested_start.tolist(), path.requested_end.tolist()
            try:
                path.points = [np.array(p, np.float32) for p in grid.shortest_path(a, b)]
            except ValueError:
                path.points, path.geodesic_distance = [], math.inf
                return False
            path.geodesic_distance = grid.geodesic_distance(a, b)
            return True

    class Agent:
        def __init__(self, cfg):
            self.cfg, self.state = cfg, AgentState()

        def set_state(self, state, reset_sensors=True):
            assert isinstance(state.rotation, _Quat) and state.position.dtype == np.float32
            self.state = state

        def get_state(self):
            return self.state

        def act(self, key):
            spec = self.cfg.action_space[key]
            a = spec.actuation.amount
            if spec.name in ("turn_left", "turn_right"):
                t = math.radians(a if spec.name == "turn_left" else -a)
                self.state.rotation = self.state.rotation * _Quat(
                    math.cos(t / 2), 0, math.sin(t / 2), 0
                )
                return False
            assert spec.name == "move_forward"
            q = self.state.rotation
            d = hc.rotate_wxyz([q.w, q.x, q.y, q.z], [0.0, 0.0, -a])
            end = self.state.position + np.array(d, np.float32)
            ok = grid.is_navigable(end)  # try_step_no_sliding
            self.state.position = end if ok else self.state.position
            return not ok

    class Simulator:
        def __init__(self, cfg):
            self.reconfigure(cfg)
            self.pathfinder, self.semantic_scene = PathFinder(), None

        def reconfigure(self, cfg):
            self.cfg, self.agent = cfg, Agent(cfg.agents[0])

        def get_agent(self, i):
            return self.agent

        def get_sensor_observations(self):
            out = {}
            for s in self.cfg.agents[0].sensor_specifications:
                h, w = s.resolution
                shape = {"COLOR": (h, w, 4), "DEPTH": (h, w), "SEMANTIC": (h, w)}[s.sensor_type]
                dtype = {"COLOR": np.uint8, "DEPTH": np.float32, "SEMANTIC": np.uint32}
                out[s.uuid] = np.ones(shape, dtype[s.sensor_type])
            return out

        def close(self):
            self.closed = True

    return NS(
        SimulatorConfiguration=Settings,
        CameraSensorSpec=Settings,
        ShortestPath=Settings,
        nav=NS(NavMeshSettings=Settings),
        SensorType=NS(COLOR="COLOR", DEPTH="DEPTH", SEMANTIC="SEMANTIC"),
        SensorSubType=NS(PINHOLE="PINHOLE"),
        agent=NS(
            AgentConfiguration=lambda **kw: NS(**kw),
            ActionSpec=lambda name, actuation: NS(name=name, actuation=actuation),
            ActuationSpec=lambda amount: NS(amount=amount),
        ),
        Configuration=lambda sim_cfg, agents: NS(sim_cfg=sim_cfg, agents=agents),
        Simulator=Simulator,
        AgentState=AgentState,
        utils=NS(common=NS(quat_from_coeffs=quat_from_coeffs, quat_to_coeffs=quat_to_coeffs)),
    )


def test_the_thin_layer_drives_habitat_sims_api(tiny_env, two_room_spec, monkeypatch):
    from vlnav.sim.habitat import HabitatSimulator
    from vlnav.sim.navgrid import NavGrid

    grid = NavGrid.from_spec(two_room_spec)
    monkeypatch.setitem(sys.modules, "habitat_sim", _fake_habitat_sim(grid, two_room_spec))
    tiny_env.sensor = SensorConfig(width=64, height=48)
    sim = HabitatSimulator(tiny_env)
    obs = sim.reset("tiny_0000/tiny_0000.glb", [2.0, 0.0, 2.0], yaw_to_quaternion(0.0))
    cfg = sim._sim.cfg
    assert cfg.sim_cfg.scene_id == "tiny_0000" and cfg.sim_cfg.allow_sliding
    assert cfg.sim_cfg.scene_dataset_config_file.endswith("tiny_0000.scene_dataset_config.json")
    assert cfg.sim_cfg.navmesh_settings.agent_radius == 0.18
    assert cfg.sim_cfg.navmesh_settings.include_static_objects
    specs = cfg.agents[0].sensor_specifications
    assert [s.resolution for s in specs] == [[48, 64]] * 3
    assert [s.position for s in specs] == [[0.0, 1.25, 0.0]] * 3
    assert obs["rgb"].shape == (48, 64, 3) and obs["semantic"].dtype == np.int32
    assert sim.objects() == two_room_spec.instances()

    sim.step(STOP)
    assert sim.agent_state().position == pytest.approx([2.0, 0.0, 2.0])
    for _ in range(6):
        sim.step(TURN_LEFT)
    st = sim.agent_state()
    assert st.heading == pytest.approx(math.pi / 2) and not st.collided
    sim.step(MOVE_FORWARD)  # facing -x after a left quarter turn
    assert sim.agent_state().position == pytest.approx([1.75, 0.0, 2.0], abs=1e-6)
    sim.reset("tiny_0000", [2.0, 0.0, 2.0], yaw_to_quaternion(0.0))
    for _ in range(12):
        sim.step(MOVE_FORWARD)  # into the north wall
    assert sim.agent_state().collided
    assert sim.geodesic_distance([1, 0, 1], [7, 0, 2]) == pytest.approx(
        grid.geodesic_distance([1, 0, 1], [7, 0, 2])
    )
    assert sim.shortest_path([1, 0, 1], [7, 0, 2])[-1] == pytest.approx([7, 0, 2], abs=0.05)
    assert sim.is_navigable([2, 0, 2]) and not sim.is_navigable([-5, 0, -5])
    pano = sim.panorama(n_views=4, sensors=("depth",))
    assert pano["depth"].shape == (4, 48, 64)
    assert pano["headings"] == pytest.approx([0.0, math.pi / 2, math.pi, -math.pi / 2])
    assert sim.agent_state().heading == pytest.approx(0.0)  # restored
    with pytest.raises(VlnavError, match="not navigable"):
        sim.reset("tiny_0000", [20.0, 0.0, 20.0], yaw_to_quaternion(0.0))
    sim.close()
