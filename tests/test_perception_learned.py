"""The learned captioner: caption text utilities, scores, a 20-step training smoke run,
resuming, checkpoint loading and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlnav import VlnavError
from vlnav.config import EnvConfig, EpisodesConfig, ScenesConfig, SensorConfig
from vlnav.perception import View, make_captioner
from vlnav.perception.base import Caption, Mention
from vlnav.perception.text import (
    WordVocab,
    bleu4,
    caption_scores,
    detokenize,
    mention_scores,
    parse_caption,
    words,
)

torch = pytest.importorskip("torch", reason="torch is in the dev extra: pip install -e '.[dev]'")

SEMANTIC = "A kitchen with a white fridge on the right and a light brown kitchen counter ahead, a doorway on the left."


def test_words_round_trip_and_vocab():
    toks = words(SEMANTIC)
    assert toks[:4] == ["a", "kitchen", "with", "a"] and "," in toks and toks[-1] == "."
    assert detokenize(toks) == SEMANTIC
    vocab = WordVocab.build([SEMANTIC, "A wall close ahead."])
    ids = vocab.encode(SEMANTIC)
    assert ids[0] == vocab.bos and ids[-1] == vocab.eos
    assert vocab.decode(ids[1:]) == SEMANTIC
    assert vocab.encode("a zebra")[2] == 3  # <unk>
    assert len(vocab.encode(SEMANTIC, max_len=5)) == 5


def test_parse_caption_recovers_semantic_structure():
    c = parse_caption(SEMANTIC)
    assert c.room == "kitchen" and c.doorway
    assert [(m.colour, m.category, m.side) for m in c.mentions] == [
        ("white", "fridge", "right"),
        ("light brown", "kitchen counter", "ahead"),
    ]
    # an uncoloured "kitchen counter" is an object, not the room "kitchen"
    c = parse_caption("A wall close ahead with a kitchen counter on the left.")
    assert c.room is None and c.mentions[0].category == "kitchen counter"
    assert parse_caption("A living room with a sofa.").room == "living room"


def test_scores():
    ref = [Caption("r", [Mention("sofa", "red"), Mention("lamp", "black")], room="bedroom")]
    hyp = [Caption("h", [Mention("sofa", "blue"), Mention("bed", "red")], room="bedroom")]
    s = mention_scores(hyp, ref)
    assert s["object_precision"] == 0.5 and s["object_recall"] == 0.5
    assert s["object_f1"] == 0.5 and s["object_colour_f1"] == 0.0
    assert s["room_accuracy"] == 1.0
    assert bleu4([SEMANTIC], [SEMANTIC]) == pytest.approx(1.0)
    assert bleu4(["a b"], [SEMANTIC]) == 0.0
    mid = bleu4(["A kitchen with a white fridge on the left."], [SEMANTIC])
    assert 0.0 < mid < 1.0
    perfect = caption_scores([SEMANTIC], [parse_caption(SEMANTIC)])
    assert perfect["object_f1"] == 1.0 and perfect["room_accuracy"] == 1.0


@pytest.fixture(scope="module")
def small_env(tmp_path_factory) -> EnvConfig:
    """One train house and one val_unseen house, 32 x 32 frames."""
    root = tmp_path_factory.mktemp("captioner-data")
    return EnvConfig(
        data_dir=str(root),
        sensor=SensorConfig(width=32, height=32),
        scenes=ScenesConfig(train=1, val_unseen=1, seed=3),
        episodes=EpisodesConfig(train_per_scene=1, val_seen_per_scene=1, val_unseen_per_scene=1),
    )


def _small_config(**kw):
    from vlnav.perception.learned import CaptionModelConfig, TrainCaptionerConfig

    model = CaptionModelConfig(image_size=32, channels=[8, 16], d_model=32, layers=1, heads=2)
    base = dict(
        frames=48, eval_frames=24, minutes=0, max_steps=20, batch_size=8, warmup_steps=5,
        threads=1, model=model,
    )  # fmt: skip
    return TrainCaptionerConfig(**(base | kw))


@pytest.fixture(scope="module")
def trained(small_env, tmp_path_factory):
    from vlnav.perception.learned import train_captioner

    out = tmp_path_factory.mktemp("ckpt") / "captioner"
    result = train_captioner(small_env, _small_config(), out, progress=False)
    return out, result


def test_training_smoke_writes_checkpoint_and_eval(trained):
    out, result = trained
    for name in ("model.pt", "vocab.json", "config.json", "train_state.pt", "eval.json"):
        assert (out / name).is_file(), name
    assert result["steps"] == 20
    ev = json.loads((out / "eval.json").read_text())
    s = ev["val_unseen"]
    for key in ("object_precision", "object_recall", "object_f1", "room_accuracy", "bleu4"):
        assert 0.0 <= s[key] <= 1.0
    assert s["captions"] == 24 and s["scenes"] == ["house_0001"]
    assert ev["train_frames"]["scenes"] == ["house_0000"]
    assert ev["examples"] and all(e["semantic"] for e in ev["examples"])
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and "with" in vocab


def test_checkpoint_loads_and_captions_pixels(trained):
    out, _ = trained
    cap = make_captioner(f"learned:{out}")
    assert cap.needs == ("rgb",) and cap.identity.startswith("learned-")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    caps = cap.caption([View(rgb=f) for f in frames])
    assert len(caps) == 3 and all(isinstance(c, Caption) for c in caps)
    feats = cap.encode(frames)
    assert feats.shape == (3, 32) and feats.dtype == np.float32
    with pytest.raises(ValueError, match="rgb"):
        cap.caption([View()])


def test_training_resumes_from_its_state(trained, small_env, tmp_path):
    import shutil

    from vlnav.perception.learned import train_captioner

    out, _ = trained
    copy = tmp_path / "resumed"
    shutil.copytree(out, copy)
    res = train_captioner(
        small_env, _small_config(max_steps=25, eval_frames=0), copy, progress=False
    )
    assert res["steps"] == 25  # continued from step 20, did not start over
    before = make_captioner(f"learned:{out}").identity
    assert make_captioner(f"learned:{copy}").identity != before  # weights changed


def test_missing_or_corrupt_checkpoint_is_a_one_line_error(trained, tmp_path):
    import shutil

    missing = tmp_path / "nope"
    with pytest.raises(VlnavError, match="not found") as e:
        make_captioner(f"learned:{missing}")
    assert str(missing) in str(e.value) and "\n" not in str(e.value)

    out, _ = trained
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    (bad / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(VlnavError, match="corrupt") as e:
        make_captioner(f"learned:{bad}")
    assert str(bad) in str(e.value) and "\n" not in str(e.value)

    (bad / "config.json").unlink()
    with pytest.raises(VlnavError, match="config.json is missing"):
        make_captioner(f"learned:{bad}")


def test_train_captioner_cli_smoke(small_env, tmp_path, capsys):
    """The command runs end to end (a few steps) and prints its scores."""
    from vlnav.cli import main

    env_yaml = tmp_path / "env.yaml"
    env_yaml.write_text(
        f"data_dir: {small_env.data_dir}\n"
        "scenes: {train: 1, val_unseen: 1, seed: 3}\n"
        "episodes: {train_per_scene: 1, val_seen_per_scene: 1, val_unseen_per_scene: 1}\n"
    )
    out = tmp_path / "cli-ckpt"
    rc = main(
        ["perception", "train-captioner", "--env", str(env_yaml), "--out", str(out),
         "--frames", "24", "--eval-frames", "12", "--minutes", "0", "--max-steps", "3",
         "--size", "32", "--batch-size", "4", "--threads", "1"]
    )  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "trained 3 steps" in text and "object P/R/F1" in text
    assert (out / "eval.json").is_file()


@pytest.mark.slow
def test_training_learns_to_caption_unseen_houses(tmp_path):
    """A short real run (400 steps on 3 houses, a couple of minutes on 2 cores) learns the
    caption language and part of what is in view in a house it never saw."""
    from vlnav.perception.learned import TrainCaptionerConfig, train_captioner

    env = EnvConfig(
        data_dir=str(tmp_path / "data"),
        scenes=ScenesConfig(train=3, val_unseen=1, seed=5),
        episodes=EpisodesConfig(train_per_scene=1, val_seen_per_scene=1, val_unseen_per_scene=1),
    )
    cfg = TrainCaptionerConfig(frames=3000, eval_frames=240, minutes=0, max_steps=400, threads=1)
    res = train_captioner(env, cfg, tmp_path / "ckpt", progress=False)
    s = res["val_unseen"]  # measured: BLEU-4 0.35, room 0.34, object F1 0.18 (random: ~0)
    assert s["bleu4"] > 0.25, s
    assert s["room_accuracy"] > 0.25, s
    assert s["object_f1"] > 0.1, s
