"""Visual features: one FeatureEncoder interface, learned and hf-clip backends, the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vlnav import VlnavError
from vlnav.perception.cache import ObservationCache
from vlnav.perception.features import FeatureEncoder, make_feature_encoder, panorama_features

torch = pytest.importorskip("torch", reason="torch is in the dev extra: pip install -e '.[dev]'")


def write_untrained_checkpoint(out: Path, image_size: int = 32, d_model: int = 24) -> Path:
    """A learned-captioner checkpoint with random weights, in the trained format."""
    import dataclasses

    from vlnav.perception.learned import FORMAT, CaptionModelConfig, _build_model, save_checkpoint
    from vlnav.perception.text import WordVocab

    mc = CaptionModelConfig(image_size=image_size, channels=[8, 16], d_model=d_model, heads=2)
    vocab = WordVocab.build(["A kitchen with a red sofa ahead."])
    cats, rooms = ["sofa"], ["kitchen"]
    model = _build_model(mc, len(vocab), len(cats), len(rooms))
    meta = {"format": FORMAT, "model": dataclasses.asdict(mc), "categories": cats, "rooms": rooms}
    save_checkpoint(out, model, vocab, meta)
    return out


@pytest.fixture
def frames():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8) for _ in range(5)]


def test_learned_features(tmp_path, frames):
    enc = make_feature_encoder(f"learned:{write_untrained_checkpoint(tmp_path / 'ckpt')}")
    assert isinstance(enc, FeatureEncoder)
    x = enc.encode(frames)
    assert x.shape == (5, enc.dim) == (5, 24) and x.dtype == np.float32
    assert np.allclose(enc.encode(frames[:1]), x[:1], atol=1e-5)  # eval mode: deterministic
    assert enc.identity.startswith("feat-learned-")
    with pytest.raises(VlnavError, match="not found"):
        make_feature_encoder(f"learned:{tmp_path / 'missing'}")


def save_tiny_clip_vision(path: Path) -> Path:
    import transformers as t

    cfg = t.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    t.CLIPVisionModelWithProjection(cfg).save_pretrained(path)
    t.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(path)
    return path


def test_hf_clip_features(tmp_path, frames, monkeypatch):
    pytest.importorskip("transformers", reason="transformers is in the dev extra")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = save_tiny_clip_vision(tmp_path / "clip")
    assert json.loads((path / "config.json").read_text())["model_type"] == "clip_vision_model"
    enc = make_feature_encoder(f"hf-clip:{path}")
    x = enc.encode(frames)
    assert x.shape == (5, 16) and enc.dim == 16 and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(x[0], x[1])  # different images, different features
    with pytest.raises(VlnavError, match="not found"):
        make_feature_encoder(f"hf-clip:{tmp_path / 'missing'}")


def test_open_clip_features_or_one_line_error():
    from vlnav.perception.pretrained import open_clip_unusable

    reason = open_clip_unusable()
    if reason is None:
        pytest.skip("open_clip imports here (its captioner test covers it)")
    with pytest.raises(VlnavError) as e:
        make_feature_encoder("open_clip:ViT-B-32")
    assert "open_clip" in str(e.value) and "\n" not in str(e.value)


def test_unknown_encoder():
    with pytest.raises(VlnavError, match="unknown feature encoder"):
        make_feature_encoder("resnet:50")


def test_panorama_features_are_cached_per_view(tiny_env, tmp_path):
    from vlnav.sim.builtin import BuiltinSimulator

    enc = make_feature_encoder(f"learned:{write_untrained_checkpoint(tmp_path / 'ckpt')}")
    sim = BuiltinSimulator(tiny_env, sensors=("rgb",))
    sim.reset("tiny_0000", [2.0, 0.0, 2.0], [0, 0, 0, 1])
    cache = ObservationCache(tmp_path / "obs.sqlite")

    calls = []
    encode = enc.encode
    enc.encode = lambda f: calls.append(len(f)) or encode(f)
    a = panorama_features(sim, "tiny_0000", enc, cache)
    b = panorama_features(sim, "tiny_0000", enc, cache)
    assert a.shape == (12, 24) and np.array_equal(a, b)
    assert calls == [12] and cache.hits == 12 and len(cache) == 12
    # the 12 views differ (the house is not rotationally symmetric)
    assert len({v.tobytes() for v in a}) > 6
    # turned 30 degrees left, the agent sees the same 12 views, one place further round
    import math

    sim.set_agent_state([2.0, 0.0, 2.0], math.radians(30))
    c = panorama_features(sim, "tiny_0000", enc, cache)
    assert calls == [12] and np.array_equal(c, np.roll(a, -1, axis=0))
    sim.close()
