"""Pretrained captioners: tiny BLIP and GIT models created here, saved with save_pretrained
and loaded through the same code path as a real checkpoint; open_clip where it imports."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from vlnav import VlnavError
from vlnav.perception import View, make_captioner

transformers = pytest.importorskip(
    "transformers", reason="transformers is in the dev extra: pip install -e '.[dev]'"
)

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "sofa", "in", "kitchen", "the"]


def tiny_tokenizer():
    """A BERT word-piece tokenizer over WORDS, built offline (BLIP and GIT use BERT's)."""
    cls = transformers.BertTokenizerFast
    vocab = {w: i for i, w in enumerate(WORDS)}
    if "vocab" in inspect.signature(cls.__init__).parameters:  # transformers >= 5
        return cls(vocab=vocab)
    import tempfile

    path = Path(tempfile.mkdtemp()) / "vocab.txt"
    path.write_text("\n".join(WORDS) + "\n")
    return cls(vocab_file=str(path))


VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
)
TEXT = dict(
    vocab_size=len(WORDS),
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=2,
    eos_token_id=3,
)


def _prefer(bias, word: str) -> None:
    """Make a random model say ``word``: raise its output bias (deterministic text)."""
    import torch

    with torch.no_grad():
        bias[WORDS.index(word)] = 20.0


def save_tiny_blip(path: Path) -> Path:
    t = transformers
    cfg = t.BlipConfig(
        vision_config=VISION, text_config=TEXT | {"sep_token_id": 3}, projection_dim=32
    )
    model = t.BlipForConditionalGeneration(cfg)
    _prefer(model.text_decoder.cls.predictions.bias, "sofa")
    model.save_pretrained(path)
    image = t.BlipImageProcessor(size={"height": 32, "width": 32})
    t.BlipProcessor(image_processor=image, tokenizer=tiny_tokenizer()).save_pretrained(path)
    return path


def save_tiny_git(path: Path) -> Path:
    t = transformers
    cfg = t.GitConfig(vision_config=VISION, **TEXT)
    model = t.GitForCausalLM(cfg)
    _prefer(model.output.bias, "kitchen")
    model.save_pretrained(path)
    image = t.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    t.GitProcessor(image_processor=image, tokenizer=tiny_tokenizer()).save_pretrained(path)
    return path


@pytest.fixture
def frame(tiny_env):
    """A real rendered frame (64 x 64) of the two-room house."""
    from vlnav.sim.builtin import BuiltinSimulator

    sim = BuiltinSimulator(tiny_env, sensors=("rgb",))
    obs = sim.reset("tiny_0000", [2.0, 0.0, 2.0], [0, 0, 0, 1])
    sim.close()
    return obs["rgb"]


@pytest.mark.parametrize("kind", ["blip", "git"])
def test_hf_captioner_loads_a_saved_tiny_checkpoint(kind, tmp_path, frame, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = (save_tiny_blip if kind == "blip" else save_tiny_git)(tmp_path / kind)
    cap = make_captioner(f"hf:{path}", max_new_tokens=4)
    assert cap.needs == ("rgb",)
    expected = {"blip": "BlipForConditionalGeneration", "git": "GitForCausalLM"}[kind]
    assert type(cap.model).__name__ == expected
    caps = cap.caption([View(rgb=frame), View(rgb=frame[:50])])
    word = "sofa" if kind == "blip" else "kitchen"
    for c in caps:
        assert word in c.text.lower() and c.text.endswith(".")
    # the free text is parsed with the house vocabulary
    if kind == "blip":
        assert caps[0].mentions and caps[0].mentions[0].category == "sofa"
    else:
        assert caps[0].room == "kitchen"
    again = make_captioner(f"hf:{path}", max_new_tokens=4)
    assert again.identity == cap.identity
    assert make_captioner(f"hf:{path}", max_new_tokens=5).identity != cap.identity


def test_hf_missing_or_corrupt_checkpoint_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "no-model"
    with pytest.raises(VlnavError, match="not found") as e:
        make_captioner(f"hf:{missing}")
    assert str(missing) in str(e.value) and "\n" not in str(e.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VlnavError, match="no config.json") as e:
        make_captioner(f"hf:{empty}")
    assert str(empty) in str(e.value)

    bad = save_tiny_blip(tmp_path / "bad")
    (bad / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(VlnavError, match="cannot load hf captioner") as e:
        make_captioner(f"hf:{bad}")
    assert str(bad) in str(e.value) and "\n" not in str(e.value)

    # offline, a model id that is not in the cache fails without a download attempt
    with pytest.raises(VlnavError, match="cannot load hf captioner 'nobody/no-such-model'"):
        make_captioner("hf:nobody/no-such-model")


def _open_clip_reason() -> str | None:
    from vlnav.perception.pretrained import open_clip_unusable

    return open_clip_unusable()


def test_open_clip_unusable_is_a_one_line_error():
    reason = _open_clip_reason()
    if reason is None:
        pytest.skip("open_clip imports here: the error path is not reachable")
    with pytest.raises(VlnavError) as e:
        make_captioner("open_clip:coca_ViT-B-32")
    assert "open_clip" in str(e.value) and "\n" not in str(e.value)


def test_open_clip_coca_captions_a_frame(tmp_path, frame):
    reason = _open_clip_reason()
    if reason is not None:
        pytest.skip(f"open_clip is unusable here: {reason}")
    import json

    import open_clip
    import torch

    # a tiny CoCa config registered under a new name, saved weights loaded by path
    tiny = {"width": 32, "layers": 1}
    cfg = {  # coca_ViT-B-32.json, shrunk
        "embed_dim": 32,
        "vision_cfg": tiny | {"image_size": 32, "patch_size": 8, "head_width": 16,
                              "attentional_pool": True, "attn_pooler_heads": 2,
                              "output_tokens": True},
        "text_cfg": tiny | {"context_length": 16, "vocab_size": 49408, "heads": 2,
                            "embed_cls": True, "output_tokens": True},
        "multimodal_cfg": tiny | {"context_length": 16, "vocab_size": 49408, "heads": 2,
                                  "attn_pooler_heads": 2},
        "custom_text": True,
    }  # fmt: skip
    (tmp_path / "coca_tiny.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path)
    model = open_clip.create_model("coca_tiny")
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    cap = make_captioner(f"open_clip:coca_tiny@{tmp_path / 'weights.pt'}", seq_len=8)
    texts = cap.describe([frame])
    assert len(texts) == 1 and isinstance(texts[0], str)


def test_open_clip_glue_with_a_stand_in_module(tmp_path, frame, monkeypatch):
    """The calls OpenClipCaptioner makes (create_model_and_transforms with a weights path,
    generate, decode), against a stand-in module: the real library is tested above where
    it imports."""
    import sys
    import types

    import torch

    calls = {}

    class CoCa(torch.nn.Module):
        def generate(self, image, seq_len=30):
            calls["generate"] = (tuple(image.shape), seq_len)
            return torch.tensor([[49406, 1, 2, 49407, 0]] * image.shape[0])

    def create_model_and_transforms(name, pretrained=None):
        calls["create"] = (name, pretrained)
        return CoCa(), None, lambda im: torch.zeros(3, 8, 8)

    def decode(ids):
        words = {49406: "<start_of_text>", 1: "a red", 2: "sofa", 49407: "<end_of_text>", 0: "!"}
        return " ".join(words[int(i)] for i in ids)

    fake = types.SimpleNamespace(
        create_model_and_transforms=create_model_and_transforms, decode=decode
    )
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    weights = tmp_path / "coca.bin"
    weights.write_bytes(b"weights")
    cap = make_captioner(f"open_clip:coca_ViT-B-32@{weights}", seq_len=12)
    assert calls["create"] == ("coca_ViT-B-32", str(weights))
    caps = cap.caption([View(rgb=frame)] * 2)
    assert calls["generate"] == ((2, 3, 8, 8), 12)
    assert caps[0].text == "A red sofa." and caps[0].mentions[0].category == "sofa"
    assert cap.identity.startswith("open_clip-coca_ViT-B-32-coca.bin-")
    with pytest.raises(VlnavError, match="weights not found"):
        make_captioner(f"open_clip:coca_ViT-B-32@{tmp_path / 'missing.bin'}")
