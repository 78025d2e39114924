"""Pretrained captioners: tiny BLIP and GIT models created here, saved with save_pretrained
and loaded through the same code path as a real checkpoint; tiny open_clip CoCa and CLIP models
saved in open_clip's HF-hub layout where open_clip imports (scripts/check_open_clip.sh builds a
venv where it does), and the open_clip glue against a stand-in module everywhere."""

from __future__ import annotations

import inspect
import json
import math
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


@pytest.fixture
def frames(tiny_env):
    """Two real rendered frames (64 x 64) of the two-room house, facing different ways."""
    from vlnav.sim.builtin import BuiltinSimulator

    sim = BuiltinSimulator(tiny_env, sensors=("rgb",))
    a = sim.reset("tiny_0000", [2.0, 0.0, 2.0], [0, 0, 0, 1])["rgb"]
    sim.set_agent_state([2.0, 0.0, 2.0], math.pi / 2)
    b = sim.observe()["rgb"]
    sim.close()
    return [a, b]


# ---------------------------------------------------------------------------------------------
# open_clip: the spec grammar and the glue run everywhere; the real library where it imports


def test_open_clip_specs_are_checked_before_loading(tmp_path):
    from vlnav.perception.pretrained import resolve_open_clip

    folder = tmp_path / "coca"
    with pytest.raises(VlnavError, match="model folder not found") as e:
        resolve_open_clip(str(folder), "open_clip")
    assert str(folder) in str(e.value)
    folder.mkdir()
    with pytest.raises(VlnavError, match="has no open_clip_config.json") as e:
        resolve_open_clip(f"local-dir:{folder}", "open_clip")
    assert str(folder) in str(e.value)
    (folder / "open_clip_config.json").write_text("{}")
    with pytest.raises(VlnavError, match="has no weights"):
        resolve_open_clip(str(folder), "open_clip")
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"w")
    name, pretrained, ident = resolve_open_clip(str(folder), "open_clip")
    assert name == f"local-dir:{folder}" and pretrained is None and ident.startswith("coca-")
    assert resolve_open_clip(f"local-dir:{folder}", "open_clip") == (name, None, ident)

    weights = folder / "open_clip_pytorch_model.bin"
    name, pretrained, ident = resolve_open_clip(f"coca_ViT-B-32@{weights}", "open_clip")
    assert (name, pretrained) == ("coca_ViT-B-32", str(weights))
    with pytest.raises(VlnavError, match="weights not found") as e:
        resolve_open_clip(f"coca_ViT-B-32@{tmp_path / 'missing.bin'}", "open_clip")
    assert str(tmp_path / "missing.bin") in str(e.value)
    with pytest.raises(VlnavError, match="has no weights"):  # open_clip would init randomly
        resolve_open_clip("coca_ViT-B-32", "open_clip")
    tag = "coca_ViT-B-32@mscoco_finetuned_laion2B-s13B-b90k"
    assert resolve_open_clip(tag, "open_clip")[:2] == tuple(tag.split("@"))
    assert resolve_open_clip("hf-hub:laion/x", "open_clip")[:2] == ("hf-hub:laion/x", None)


def _open_clip_reason() -> str | None:
    from vlnav.perception.pretrained import open_clip_unusable

    return open_clip_unusable()


def test_open_clip_unusable_is_a_one_line_error():
    reason = _open_clip_reason()
    if reason is None:
        pytest.skip("open_clip imports here: the error path is not reachable")
    with pytest.raises(VlnavError) as e:
        make_captioner("open_clip:coca_ViT-B-32")
    assert str(e.value) == reason and "open_clip" in reason and "\n" not in reason


# open_clip's coca_ViT-B-32.json, shrunk (the tokenizer stays CLIP's BPE: vocab 49408)
TINY_COCA = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                   "head_width": 16, "attentional_pool": True, "attn_pooler_heads": 2,
                   "output_tokens": True},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1, "embed_cls": True, "output_tokens": True},
    "multimodal_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                       "layers": 1, "attn_pooler_heads": 2},
    "custom_text": True,
}  # fmt: skip
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture
def open_clip(monkeypatch):
    reason = _open_clip_reason()
    if reason is not None:
        pytest.skip(f"open_clip is unusable here: {reason}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a tiny local model: nothing may be downloaded
    import open_clip

    return open_clip


def save_open_clip(path: Path, cfg: dict, say: str | None = None, seed: int = 0) -> Path:
    """A model saved in open_clip's HF-hub layout, as a hub snapshot holds it (and as
    ``open_clip.push_to_hf_hub.save_for_hf`` writes it): ``open_clip_config.json`` with
    ``model_cfg`` and ``preprocess_cfg``, and the state dict in ``open_clip_pytorch_model.bin``.
    With ``say``, the CoCa decoder's logits are made the same at every place: the end token
    first, ``say`` second (so, with ``min_len`` m, the caption is ``say`` m - 1 times)."""
    import copy

    import open_clip
    import torch
    from open_clip.constants import HF_CONFIG_NAME, HF_WEIGHTS_NAME
    from open_clip.push_to_hf_hub import save_config_for_hf

    path.mkdir(parents=True)
    (path / HF_CONFIG_NAME).write_text(json.dumps({"model_cfg": cfg}))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{path}")  # no weights yet: random
    dec = getattr(model, "text_decoder", None)
    if dec is not None:  # CoCa leaves its decoder's projection uninitialised (torch.empty)
        with torch.no_grad():
            torch.nn.init.normal_(dec.text_projection, std=dec.text_projection.shape[0] ** -0.5)
    if say is not None:
        tok = open_clip.SimpleTokenizer()
        (word,) = tok.encode(say)
        with torch.no_grad():
            dec.ln_final.weight.zero_()
            dec.ln_final.bias.fill_(1.0)  # every place's output: ones @ text_projection
            dec.text_projection.zero_()
            dec.text_projection[:, tok.eot_token_id] = 20.0 / dec.text_projection.shape[0]
            dec.text_projection[:, word] = 10.0 / dec.text_projection.shape[0]
    save_config_for_hf(model, path / HF_CONFIG_NAME, copy.deepcopy(cfg))
    torch.save(model.state_dict(), path / HF_WEIGHTS_NAME)
    return path


def test_open_clip_coca_captions_a_frame(open_clip, tmp_path, frames):
    import torch

    folder = save_open_clip(tmp_path / "coca-sofa", TINY_COCA, say="sofa")
    assert json.loads((folder / "open_clip_config.json").read_text())["preprocess_cfg"]
    cap = make_captioner(f"open_clip:{folder}", seq_len=8, min_len=3)
    assert isinstance(cap.model, open_clip.CoCa) and cap.needs == ("rgb",)
    caps = cap.caption([View(rgb=frames[0]), View(rgb=frames[1][:50])])
    # the weights were loaded: a random CoCa would not say "sofa sofa"
    assert [c.text for c in caps] == ["Sofa sofa."] * 2
    assert caps[0].mentions and caps[0].mentions[0].category == "sofa"
    beams = make_captioner(f"open_clip:local-dir:{folder}", seq_len=8, min_len=4, num_beams=3)
    assert beams.describe(frames) == ["Sofa sofa sofa."] * 2
    assert make_captioner(f"open_clip:{folder}", seq_len=8, min_len=3).identity == cap.identity
    assert beams.identity != cap.identity

    # a built-in-style name with a weights file (here a registered tiny config), safetensors
    from safetensors.torch import save_file

    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "coca_vlnav_tiny.json").write_text(json.dumps(TINY_COCA))
    open_clip.add_model_config(tmp_path / "cfgs")
    weights = tmp_path / "open_clip_model.safetensors"
    save_file(torch.load(folder / "open_clip_pytorch_model.bin"), weights)
    named = make_captioner(f"open_clip:coca_vlnav_tiny@{weights}", seq_len=8, min_len=3)
    assert named.describe(frames[:1]) == ["Sofa sofa."]
    assert named.identity.startswith("open_clip-coca_vlnav_tiny-open_clip_model.safetensors-")


def test_open_clip_decoding_matches_coca_generate(open_clip, tmp_path, frames, monkeypatch):
    """vlnav's greedy decoding gives the tokens of open_clip's own ``CoCa.generate`` (top-1
    sampling is greedy) on a random CoCa; generate itself needs transformers' generation
    classes, which transformers 5 no longer has all of, so they are put back when missing."""
    import torch
    from open_clip import coca_model

    from vlnav.perception.pretrained import _rgb_images, coca_generate

    transformers = pytest.importorskip("transformers")
    monkeypatch.setattr(coca_model, "_has_transformers", True)
    monkeypatch.setitem(coca_model.GENERATION_TYPES, "top_k", transformers.TopKLogitsWarper)
    for name in ("LogitsProcessorList", "MinLengthLogitsProcessor", "MaxLengthCriteria",
                 "RepetitionPenaltyLogitsProcessor", "StoppingCriteriaList"):  # fmt: skip
        monkeypatch.setattr(coca_model, name, getattr(transformers, name), raising=False)

    folder = save_open_clip(tmp_path / "coca", TINY_COCA, seed=1)
    cap = make_captioner(f"open_clip:{folder}", seq_len=10, min_len=3)
    x = torch.stack([cap.preprocess(im) for im in _rgb_images(frames)])
    tok = cap.tokenizer
    with torch.inference_mode():
        ours = coca_generate(
            cap.model, x, tok.sot_token_id, tok.eot_token_id, seq_len=10, min_len=3
        )
        ref = cap.model.generate(x, seq_len=10, min_seq_len=3, generation_type="top_k", top_k=1)
    for row, mine in zip(ref.tolist(), ours):
        assert row[0] == tok.sot_token_id
        end = row.index(tok.eot_token_id)
        assert row[1:end] == mine and len(mine) >= 2
    texts = cap.describe(frames)
    assert texts == cap.describe(frames) and all(isinstance(t, str) for t in texts)


def test_open_clip_missing_or_corrupt_checkpoint_is_a_one_line_error(open_clip, tmp_path):
    missing = tmp_path / "no-model"
    with pytest.raises(VlnavError, match="model folder not found") as e:
        make_captioner(f"open_clip:{missing}")
    assert str(missing) in str(e.value) and "\n" not in str(e.value)

    bad = save_open_clip(tmp_path / "bad", TINY_COCA)
    (bad / "open_clip_pytorch_model.bin").write_bytes(b"garbage")
    with pytest.raises(VlnavError, match="cannot load open_clip model from") as e:
        make_captioner(f"open_clip:{bad}")
    assert str(bad) in str(e.value) and "\n" not in str(e.value)

    bad_file = tmp_path / "bad.bin"
    bad_file.write_bytes(b"garbage")
    with pytest.raises(VlnavError, match="cannot load open_clip model from") as e:
        make_captioner(f"open_clip:coca_ViT-B-32@{bad_file}")
    assert str(bad_file) in str(e.value) and "\n" not in str(e.value)

    with pytest.raises(VlnavError, match="weights not found") as e:
        make_captioner(f"open_clip:coca_ViT-B-32@{tmp_path / 'missing.bin'}")
    with pytest.raises(VlnavError, match="has no weights"):
        make_captioner("open_clip:coca_ViT-B-32")
    # offline, a pretrained tag that is not in the cache fails without a download
    with pytest.raises(VlnavError, match="cannot load open_clip model from coca_ViT-B-32@"):
        make_captioner("open_clip:coca_ViT-B-32@no_such_tag")

    clip = save_open_clip(tmp_path / "clip", TINY_CLIP)
    with pytest.raises(VlnavError, match="cannot caption"):
        make_captioner(f"open_clip:{clip}")


@pytest.mark.parametrize("kind", ["coca", "clip"])
def test_open_clip_features(open_clip, tmp_path, frames, kind):
    import numpy as np

    from vlnav.perception.features import FeatureEncoder, make_feature_encoder

    cfg = TINY_COCA if kind == "coca" else TINY_CLIP
    folder = save_open_clip(tmp_path / kind, cfg)
    enc = make_feature_encoder(f"open_clip:{folder}")
    assert isinstance(enc, FeatureEncoder) and enc.dim == cfg["embed_dim"]
    x = enc.encode(frames + [frames[0][:40]])
    assert x.shape == (3, enc.dim) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert np.allclose(enc.encode(frames[:1]), x[:1], atol=1e-5)  # eval mode: deterministic
    assert not np.allclose(x[0], x[1])  # different views, different features
    assert enc.encode([]).shape == (0, enc.dim)
    assert make_feature_encoder(f"open_clip:{folder}").identity == enc.identity
    with pytest.raises(VlnavError, match="model folder not found"):
        make_feature_encoder(f"open_clip:{tmp_path / 'missing'}")


class _StandInCoCa:
    """What OpenClipCaptioner uses of a CoCa: ``_encode_image``, ``forward`` and its decoder.
    Its next token depends only on the last one: <sot> -> "a red" -> "sofa" -> <eot>, and a
    weaker "kitchen" after "sofa"."""

    SOT, EOT = 49406, 49407
    WORDS = {1: "a red ", 2: "sofa ", 3: "kitchen "}
    NEXT = {49406: {1: 5.0}, 1: {2: 5.0}, 2: {49407: 5.0, 3: 4.0}, 3: {49407: 5.0}}

    def __init__(self):
        self.text_decoder = object()
        self.context_length = 16
        self.pad_id = 0
        self.calls = []

    def eval(self):
        return self

    def _encode_image(self, images):
        import torch

        return torch.zeros(images.shape[0], 4), torch.zeros(images.shape[0], 2, 4)

    def __call__(self, image, text, image_latent=None, image_embs=None, output_labels=True):
        import torch

        assert image is None and image_embs.shape[0] == text.shape[0] and not output_labels
        self.calls.append(tuple(text.shape))
        logits = torch.full((text.shape[0], text.shape[1], 49408), -10.0)
        for r, last in enumerate(text[:, -1].tolist()):
            for tok, v in self.NEXT.get(last, {}).items():
                logits[r, -1, tok] = v
        return {"logits": logits}


def test_open_clip_glue_with_a_stand_in_module(tmp_path, frame, monkeypatch):
    """The calls OpenClipCaptioner makes (create_model_and_transforms with a weights path,
    get_tokenizer, the model's forward) and vlnav's decoding, against a stand-in module: the
    real library is tested above where it imports."""
    import sys
    import types

    import torch

    calls = {}
    model = _StandInCoCa()

    def create_model_and_transforms(name, pretrained=None, device="cpu"):
        calls["create"] = (name, pretrained, device)
        return model, None, lambda im: torch.zeros(3, 8, 8)

    class Tokenizer:
        sot_token_id, eot_token_id = _StandInCoCa.SOT, _StandInCoCa.EOT

        def decode(self, ids):
            return "".join(_StandInCoCa.WORDS[i] for i in ids)

    def get_tokenizer(name):
        calls["tokenizer"] = name
        return Tokenizer()

    fake = types.SimpleNamespace(
        create_model_and_transforms=create_model_and_transforms, get_tokenizer=get_tokenizer
    )
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    weights = tmp_path / "coca.bin"
    weights.write_bytes(b"weights")
    cap = make_captioner(f"open_clip:coca_ViT-B-32@{weights}", seq_len=12, min_len=2)
    assert calls["create"] == ("coca_ViT-B-32", str(weights), "cpu")
    assert calls["tokenizer"] == "coca_ViT-B-32"
    caps = cap.caption([View(rgb=frame)] * 2)
    assert [c.text for c in caps] == ["A red sofa."] * 2
    assert caps[0].mentions[0].category == "sofa"
    assert model.calls == [(2, 1), (2, 2), (2, 3)]  # stops once every caption has ended
    assert cap.identity.startswith("open_clip-coca_ViT-B-32-coca.bin-")
    # min_len bars the end token: "sofa" must go on to "kitchen"
    longer = make_captioner(f"open_clip:coca_ViT-B-32@{weights}", seq_len=12, min_len=4)
    assert longer.describe([frame]) == ["A red sofa kitchen."]
    # seq_len forces the end token at the last place
    short = make_captioner(f"open_clip:coca_ViT-B-32@{weights}", seq_len=3, min_len=1)
    assert short.describe([frame]) == ["A red."]
    # beam search keeps the best-scoring finished caption
    beam = make_captioner(f"open_clip:coca_ViT-B-32@{weights}", seq_len=12, num_beams=3, min_len=2)
    assert beam.describe([frame, frame]) == ["A red sofa."] * 2
    with pytest.raises(VlnavError, match="weights not found"):
        make_captioner(f"open_clip:coca_ViT-B-32@{tmp_path / 'missing.bin'}")
    with pytest.raises(VlnavError, match="min_len < seq_len"):
        make_captioner(f"open_clip:coca_ViT-B-32@{weights}", seq_len=3, min_len=3)
    with pytest.raises(VlnavError, match="exceeds"):
        make_captioner(f"open_clip:coca_ViT-B-32@{weights}", seq_len=40)
