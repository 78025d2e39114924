"""Rendering domains (envs/procedural-textured.yaml, envs/procedural-noisy.yaml): what changes
(RGB), what does not (houses, episodes, depth, instance ids), determinism, the ranges and the
sensor effects. Everything renders the two-room house at 64 x 64 on llvmpipe."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from vlnav.config import (
    ConfigError,
    DomainConfig,
    EnvConfig,
    LightConfig,
    NoiseConfig,
    load_config,
)
from vlnav.sim import domains
from vlnav.sim.builtin import BuiltinSimulator
from vlnav.sim.render import Renderer

SMALL = ["sensor.width=64", "sensor.height=64"]


def domain_env(tiny_env: EnvConfig, name: str, *overrides: str) -> EnvConfig:
    """The shipped env file ``envs/<name>.yaml`` on the two-room house."""
    return load_config(
        EnvConfig, f"envs/{name}.yaml", [f"data_dir={tiny_env.data_dir}", *SMALL, *overrides]
    )


def observe_all(config: EnvConfig, episodes) -> list[dict[str, np.ndarray]]:
    """reset() observations and 4-view panoramas at the start of each episode."""
    sim = BuiltinSimulator(config)
    out = []
    try:
        for ep in episodes:
            obs = sim.reset(ep.scene_id, ep.start_position, ep.start_rotation)
            pano = sim.panorama(n_views=4)
            out.append({**obs, **{f"pano_{k}": v for k, v in pano.items()}})
    finally:
        sim.close()
    return out


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


# ------------------------------------------------------------------ domain A
def test_default_domain_is_bit_identical_to_no_domain(tiny_env, tiny_episodes):
    """No domain section, an explicit default one (another name and seed) and a domain whose
    ranges are all neutral render exactly what the bare renderer renders."""
    neutral = DomainConfig(name="neutral", light=LightConfig(intensity=1.0, warmth=0.0))
    configs = [
        tiny_env,
        dataclasses.replace(tiny_env, domain=DomainConfig(name="a", seed=7)),
        dataclasses.replace(tiny_env, domain=neutral),
    ]
    runs = [observe_all(cfg, tiny_episodes) for cfg in configs]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert a.keys() == b.keys()
            for key in a:
                assert np.array_equal(a[key], b[key]), key

    # the reference: the renderer on its own, as before domains existed
    from vlnav.scenes.mesh import build_meshes

    sim = BuiltinSimulator(tiny_env)
    ep = tiny_episodes[0]
    sim.reset(ep.scene_id, ep.start_position, ep.start_rotation)
    eye, heading = sim.eye(), sim.agent_state().heading
    sim.close()
    with Renderer(64, 64, hfov=tiny_env.sensor.hfov) as r:
        r.set_geometry(*Renderer.geometry_from_meshes(build_meshes(sim.spec)))
        ref = r.render(eye, heading)
    for key in ("rgb", "depth", "semantic"):
        assert np.array_equal(runs[0][0][key], ref[key]), key


# ------------------------------------------------------------------ domain B
def test_textured_domain_changes_rgb_but_not_depth_or_ids(tiny_env, tiny_episodes):
    a = observe_all(tiny_env, tiny_episodes)
    b = observe_all(domain_env(tiny_env, "procedural-textured"), tiny_episodes)
    for obs_a, obs_b in zip(a, b):
        for prefix in ("", "pano_"):
            assert mean_abs_diff(obs_a[prefix + "rgb"], obs_b[prefix + "rgb"]) > 15.0
            assert np.array_equal(obs_a[prefix + "semantic"], obs_b[prefix + "semantic"])
            assert np.array_equal(obs_a[prefix + "depth"], obs_b[prefix + "depth"])


def test_textures_add_texture_within_surfaces(tiny_env, tiny_episodes):
    """Inside one instance's pixels, textures add variation that flat colours lack."""
    plain = domain_env(tiny_env, "procedural-textured", "domain.textures=false")
    textured = domain_env(tiny_env, "procedural-textured")
    (p,), (t,) = (observe_all(cfg, tiny_episodes[:1]) for cfg in (plain, textured))
    ids = p["pano_semantic"]
    spread = {"plain": [], "textured": []}
    for iid in np.unique(ids[ids > 0]):
        mask = ids == iid
        if mask.sum() < 200:
            continue
        for name, obs in (("plain", p), ("textured", t)):
            grey = obs["pano_rgb"].astype(np.float64).mean(axis=-1)
            # local variation: grey minus its 3 x 3 box mean, inside the instance
            local = grey - np.stack([cv2.blur(g, (3, 3)) for g in grey])
            spread[name].append(np.abs(local[mask]).mean())
    assert np.mean(spread["textured"]) > 2 * np.mean(spread["plain"]) + 0.5


def test_vertex_materials_by_surface(two_room_spec):
    from vlnav.scenes.mesh import build_meshes

    _, colors, ids, _ = Renderer.geometry_from_meshes(build_meshes(two_room_spec))
    materials = domains.vertex_materials(two_room_spec, ids, colors)
    m = domains.MATERIALS
    by_id = {int(i): set(materials[ids == i].tolist()) for i in np.unique(ids)}
    assert by_id[10] == {m["plaster"]}  # a wall
    assert by_id[30] == {m["fabric"]}  # the sofa
    assert by_id[31] == {m["smooth"]}  # the white fridge
    assert by_id[1] <= {m["wood"], m["tiles"], m["carpet"]}  # a floor
    assert by_id[20] == {m["plaster"], m["wood"]}  # the doorway: wall above it, wooden frame


# ------------------------------------------------------------------ domain C
def test_noisy_domain_changes_rgb_and_shifts_the_camera(tiny_env, tiny_episodes):
    config = domain_env(tiny_env, "procedural-noisy")
    a = observe_all(tiny_env, tiny_episodes)
    c = observe_all(config, tiny_episodes)
    for obs_a, obs_c in zip(a, c):
        assert mean_abs_diff(obs_a["rgb"], obs_c["rgb"]) > 8.0
        assert mean_abs_diff(obs_a["pano_rgb"], obs_c["pano_rgb"]) > 8.0
    sim = BuiltinSimulator(config)
    base = config.sensor
    lo_h, hi_h = config.domain.camera.height_jitter
    lo_f, hi_f = config.domain.camera.hfov_jitter
    heights, fovs = set(), set()
    for ep in tiny_episodes:
        sim.reset(ep.scene_id, ep.start_position, ep.start_rotation)
        heights.add(sim.eye()[1])
        fovs.add(sim.hfov)
        assert base.camera_height + lo_h <= sim.eye()[1] <= base.camera_height + hi_h
        assert base.hfov + lo_f <= sim.hfov <= base.hfov + hi_f
        assert sim._renderer.hfov == sim.hfov  # the renderer draws what hfov says
    sim.close()
    assert len(heights) == len(tiny_episodes) and len(fovs) == len(tiny_episodes)


def test_noise_only_domain_keeps_depth_and_ids(tiny_env, tiny_episodes):
    config = domain_env(tiny_env, "procedural-noisy", "domain.camera=null")
    a = observe_all(tiny_env, tiny_episodes[:2])
    c = observe_all(config, tiny_episodes[:2])
    for obs_a, obs_c in zip(a, c):
        assert mean_abs_diff(obs_a["rgb"], obs_c["rgb"]) > 8.0
        assert np.array_equal(obs_a["semantic"], obs_c["semantic"])
        assert np.array_equal(obs_a["pano_depth"], obs_c["pano_depth"])


# ------------------------------------------------------------------ determinism and ranges
@pytest.mark.parametrize("name", ["procedural-textured", "procedural-noisy"])
def test_same_seed_same_images(tiny_env, tiny_episodes, name):
    config = domain_env(tiny_env, name)
    first = observe_all(config, tiny_episodes)
    again = observe_all(config, list(reversed(tiny_episodes)))[::-1]  # order does not matter
    for a, b in zip(first, again):
        for key in a:
            assert np.array_equal(a[key], b[key]), key
    # one pose, one image: observe() and the panorama's first view agree
    for obs in first:
        assert np.array_equal(obs["rgb"], obs["pano_rgb"][0])
    other = observe_all(domain_env(tiny_env, name, "domain.seed=1"), tiny_episodes[:1])
    assert not np.array_equal(first[0]["rgb"], other[0]["rgb"])


@pytest.mark.parametrize("name", ["procedural-textured", "procedural-noisy"])
def test_snapshot_restore_brings_back_an_episode_and_its_draw(tiny_env, tiny_episodes, name):
    """The batched evaluator interleaves episodes in one simulator: after a restore, an
    episode renders exactly as if it had never been left."""
    alone = observe_all(domain_env(tiny_env, name), tiny_episodes[:2])
    sim = BuiltinSimulator(domain_env(tiny_env, name))
    try:
        a, b = tiny_episodes[:2]
        sim.reset(a.scene_id, a.start_position, a.start_rotation)
        snap = sim.snapshot()
        sim.reset(b.scene_id, b.start_position, b.start_rotation)
        sim.step(2)  # turn: the pose moves on too
        sim.restore(snap)
        assert np.array_equal(sim.observe()["rgb"], alone[0]["rgb"])
        assert np.array_equal(sim.panorama(n_views=4)["rgb"], alone[0]["pano_rgb"])
        assert sim.agent_state().position == snap[1][0]
    finally:
        sim.close()


def test_draws_differ_per_episode_within_ranges(tiny_env, tiny_episodes):
    for name in ("procedural-textured", "procedural-noisy"):
        domain = domain_env(tiny_env, name).domain
        draws = [
            domains.sample_params(domain, ep.scene_id, ep.start_position, 0.0)
            for ep in tiny_episodes
        ]
        for section, key, field in domains._DRAWS:
            owner = getattr(domain, section) if section else domain
            span = getattr(owner, key) if owner is not None else None
            values = [getattr(d, field) for d in draws]
            if span is None:
                assert len(set(values)) == 1  # unset: the neutral value, always
                continue
            assert all(span[0] <= v <= span[1] for v in values), (field, values)
            distinct = len(values) if field != "jpeg_quality" else 2  # integers may repeat
            assert len(set(values)) >= distinct, (field, values)
    # a fixed value is that value; the scene alone is a draw of its own
    fixed = DomainConfig(noise=NoiseConfig(blur_sigma=1.25))
    assert domains.sample_params(fixed, "s", [0, 0, 0], 0.0).blur_sigma == 1.25
    first = tiny_episodes[0]
    d = domain_env(tiny_env, "procedural-textured").domain
    assert domains.sample_params(d, first.scene_id) != domains.sample_params(
        d, first.scene_id, first.start_position
    )


def test_render_tag_names_the_draw(tiny_env, tiny_episodes):
    sim_a = BuiltinSimulator(tiny_env)
    sim_b = BuiltinSimulator(domain_env(tiny_env, "procedural-textured"), sensors=())
    tags = set()
    for ep in tiny_episodes[:3]:
        sim_a.reset(ep.scene_id, ep.start_position, ep.start_rotation)
        sim_b.reset(ep.scene_id, ep.start_position, ep.start_rotation)
        assert sim_a.render_tag == ""
        tags.add(sim_b.render_tag)
    assert len(tags) == 3 and all(t.startswith("textured-") for t in tags)
    sim_a.close()
    sim_b.close()


def test_text_observation_cache_is_per_domain_draw(tiny_env, tiny_episodes, tmp_path):
    """A pixel captioner's cached text of one domain is never served in another."""
    from vlnav.perception.base import Caption
    from vlnav.perception.cache import ObservationCache
    from vlnav.perception.candidates import TextObserver

    class MeanColour:
        name, needs, identity = "mean", ("rgb",), "mean-v1"

        def caption(self, views):
            return [Caption(text=str(int(v.rgb.mean()))) for v in views]

    cache = ObservationCache(tmp_path / "cache.sqlite")
    ep = tiny_episodes[0]
    texts = []
    for config in (tiny_env, domain_env(tiny_env, "procedural-textured")):
        sim = BuiltinSimulator(config)
        sim.reset(ep.scene_id, ep.start_position, ep.start_rotation)
        obs = TextObserver(sim, MeanColour(), cache=cache).observe(ep.scene_id)
        texts.append([c.caption.text for c in obs.candidates])
        sim.close()
    assert texts[0] and texts[0] != texts[1]
    assert len(cache) == 2
    cache.close()


# ------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "override, message",
    [
        ("domain.nosie.blur_sigma=1", "unknown config key 'domain.nosie'"),
        ("domain.noise.blurr=1", "unknown config key 'domain.noise.blurr'"),
        ("domain.noise.blur_sigma=[2, 1]", "domain.noise.blur_sigma=[2.0, 1.0] should be"),
        ("domain.noise.gaussian_std=[0, 0.9]", "domain.noise.gaussian_std=0.9 is out of range"),
        ("domain.light.azimuth=[0, 10]", "domain.light.azimuth and elevation are set together"),
        ("domain.camera.height_jitter=-1.2", "domain.camera.height_jitter=-1.2 is out of range"),
        ("domain.camera.hfov_jitter=[-5, 90]", "domain.camera.hfov_jitter=90"),
        ("domain.textures=maybe", "domain.textures='maybe' should be true or false"),
    ],
)
def test_bad_domain_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(EnvConfig, "envs/procedural-noisy.yaml", [override])
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_domains_need_the_builtin_backend():
    with pytest.raises(ConfigError, match="domain 'noisy' needs backend: builtin"):
        load_config(EnvConfig, "envs/procedural-noisy.yaml", ["backend=habitat"])
    load_config(EnvConfig, "envs/habitat-procedural.yaml")  # domain A: fine


def test_domain_envs_share_domain_a_houses_and_episodes():
    a = load_config(EnvConfig, "envs/procedural.yaml")
    for name in ("procedural-textured", "procedural-noisy"):
        other = load_config(EnvConfig, f"envs/{name}.yaml")
        assert not other.domain.is_default
        for field in ("backend", "data_dir", "grid_cell", "scenes", "episodes", "agent"):
            assert getattr(other, field) == getattr(a, field), (name, field)
        assert other.episodes_path("val_unseen") == a.episodes_path("val_unseen")
    assert load_config(EnvConfig, "envs/procedural.yaml").domain.is_default


# ------------------------------------------------------------------ sensor effects
def _scene_image() -> np.ndarray:
    """A 64 x 64 image with edges and texture: stripes, a square and some noise."""
    rng = np.random.default_rng(0)
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, ::4] = 200
    img[16:48, 16:48] = (40, 160, 90)
    noise = rng.integers(-20, 20, img.shape)
    return np.clip(img.astype(int) + noise + 30, 0, 255).astype(np.uint8)


def _high_frequency_energy(img: np.ndarray) -> float:
    return float(cv2.Laplacian(img.astype(np.float32).mean(axis=-1), cv2.CV_32F).var())


def test_blur_lowers_high_frequency_energy():
    img = _scene_image()
    energies = [_high_frequency_energy(domains.gaussian_blur(img, s)) for s in (0.0, 0.7, 1.5)]
    assert energies[0] == _high_frequency_energy(img)
    assert energies[0] > 2 * energies[1] > 0 and energies[1] > energies[2]


def test_exposure_and_gamma_move_brightness_the_right_way():
    img = _scene_image()
    mean = img.mean()
    assert np.array_equal(domains.adjust_exposure(img, 1.0, 1.0), img)
    assert domains.adjust_exposure(img, 0.5).mean() < mean - 10
    assert domains.adjust_exposure(img, 2.0).mean() > mean + 10
    assert domains.adjust_exposure(img, 1.0, gamma=1.5).mean() > mean + 5
    assert domains.adjust_exposure(img, 1.0, gamma=0.7).mean() < mean - 5


def test_gaussian_noise_has_the_asked_std_and_is_seeded():
    grey = np.full((128, 128, 3), 128, np.uint8)
    for std in (0.02, 0.05):
        noisy = domains.add_gaussian_noise(grey, std, seed=[3, 4])
        diff = noisy.astype(np.float64) - 128
        assert abs(diff.mean()) < 0.5
        for channel in range(3):
            assert diff[..., channel].std() == pytest.approx(255 * std, rel=0.05)
    a = domains.add_gaussian_noise(grey, 0.05, seed=[3, 4])
    assert np.array_equal(a, domains.add_gaussian_noise(grey, 0.05, seed=[3, 4]))
    assert not np.array_equal(a, domains.add_gaussian_noise(grey, 0.05, seed=[3, 5]))
    assert np.array_equal(domains.add_gaussian_noise(grey, 0.0, seed=1), grey)


def test_jpeg_round_trip_loses_more_at_low_quality():
    img = _scene_image()
    errors = [mean_abs_diff(domains.jpeg_compress(img, q), img) for q in (95, 50, 10)]
    assert 0 < errors[0] < errors[1] < errors[2]
    out = domains.jpeg_compress(img, 50)
    assert out.shape == img.shape and out.dtype == np.uint8
    # channel order survives the round trip (OpenCV works in BGR)
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 220
    assert domains.jpeg_compress(red, 90)[..., 0].mean() > 200


def test_sensor_effects_pipeline_is_pure():
    img = _scene_image()
    params = domains.DomainParams(
        blur_sigma=1.0, exposure=1.4, gamma=1.1, gaussian_std=0.04, jpeg_quality=40
    )
    before = img.copy()
    out = domains.sensor_effects(img, params, seed=[1, 2])
    assert np.array_equal(img, before)  # the input is not touched
    assert np.array_equal(out, domains.sensor_effects(img, params, seed=[1, 2]))
    assert np.array_equal(domains.sensor_effects(img, domains.DomainParams(), seed=0), img)


# ------------------------------------------------------------------ renderer and figure
def test_set_hfov_matches_a_renderer_made_with_it(two_room_spec):
    from vlnav.scenes.mesh import build_meshes

    geometry = Renderer.geometry_from_meshes(build_meshes(two_room_spec))
    eye = (2.0, 1.25, 2.0)
    with Renderer(64, 64, hfov=75.0) as direct, Renderer(64, 64, hfov=90.0) as changed:
        direct.set_geometry(*geometry)
        changed.set_geometry(*geometry)
        changed.render(eye, 0.3)  # compile with the old projection first
        changed.set_hfov(75.0)
        a, b = direct.render(eye, 0.3), changed.render(eye, 0.3)
        for key in a:
            assert np.array_equal(a[key], b[key]), key


def test_compare_figure_writes_one_panel_per_env(tiny_env, tiny_episodes, tmp_path):
    ep = tiny_episodes[0]
    envs = [f"envs/{n}.yaml" for n in ("procedural", "procedural-textured", "procedural-noisy")]
    path = domains.compare_figure(
        envs,
        ep.scene_id,
        ep.start_position,
        0.0,
        out=tmp_path / "domains.png",
        size=64,
        data_dir=tiny_env.data_dir,
    )
    image = cv2.imread(str(path))
    assert image.shape == (64 + 28, 3 * 64 + 2 * 6, 3)


def test_env_observations_see_the_domain(tiny_env, tiny_episodes):
    """The gymnasium env returns the domain's RGB (it reads the simulator's observations)."""
    from vlnav.env import VLNEnv

    obs = []
    for config in (tiny_env, domain_env(tiny_env, "procedural-textured")):
        env = VLNEnv(config, split="val_unseen", prepare=False)
        first, _ = env.reset(seed=0, options={"episode_index": 0})
        stepped, *_ = env.step(2)
        obs.append((first, stepped))
        env.close()
    (a0, a1), (b0, b1) = obs
    for a, b in ((a0, b0), (a1, b1)):
        assert mean_abs_diff(a["rgb"], b["rgb"]) > 15.0
        assert np.array_equal(a["semantic"], b["semantic"])
