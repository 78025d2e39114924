"""Pretrained pixel captioners: ``hf:<model id or path>`` and ``open_clip:<folder> | open_clip:<model>@<weights>``.

``hf`` loads a transformers image-to-text model (BLIP ``BlipForConditionalGeneration``, GIT
``GitForCausalLM``, or anything ``AutoModelForImageTextToText`` knows) with its
``AutoProcessor``, from a local folder (``save_pretrained`` output) or the Hugging Face cache;
with ``HF_HUB_OFFLINE=1`` (or a local folder) nothing is downloaded (``local_files_only``).

``open_clip`` captions with a CoCa model loaded by ``open_clip``: a folder in open_clip's
HF-hub layout (``open_clip_config.json`` + ``open_clip_pytorch_model.bin``), a built-in config
with a weights file (``coca_ViT-B-32@/path/to/weights.bin``), or a pretrained tag / ``hf-hub:``
repo found in the cache. The text is generated here (:func:`coca_generate`, greedy or beam
search), not by ``CoCa.generate``, which needs transformers' ``BeamSearchScorer`` (removed in
transformers 5). open_clip imports torchvision, which must be built for the installed torch
(PyPI's torchvision fails to import beside the CPU torch 2.13.0 wheel); where it cannot be
imported the captioner fails when constructed, with the reason, in one line.

The free text is turned into a :class:`Caption` by :func:`vlnav.perception.text.parse_caption`
(room, object categories, colours, sides of the house vocabulary).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from vlnav import VlnavError
from vlnav.perception.base import Caption, View
from vlnav.perception.text import parse_caption, text_vocabulary

# model_type (config.json) -> the transformers class that captions with it
HF_CLASSES = {"blip": "BlipForConditionalGeneration", "git": "GitForCausalLM"}


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or (os.sep in spec and Path(spec).parent.is_dir())


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def folder_digest(path: Path) -> str:
    """A cheap identity of a model folder: names, sizes and mtimes of its files."""
    h = hashlib.sha1()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(path)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def resolve_hf(spec: str, what: str) -> tuple[str, bool, str]:
    """(name or path to pass to from_pretrained, local_files_only, identity suffix)."""
    if not spec:
        raise VlnavError(f"{what} needs a model id or folder, e.g. {what}:/path/to/model")
    p = Path(spec).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise VlnavError(f"{what} model folder {p} has no config.json (not a saved model)")
        return str(p), True, folder_digest(p)
    if p.exists() or _looks_like_path(spec):
        raise VlnavError(f"{what} model not found: {p} (expected a folder from save_pretrained)")
    return spec, offline(), spec


def sentence(text: str) -> str:
    """Clean generated text into one sentence: single spaces, capital first letter, a period."""
    text = " ".join(text.split())
    if not text:
        return text
    text = text[:1].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


class _PixelCaptioner:
    """Shared part: frames -> free text (``describe``) -> parsed Captions."""

    name = "pixel"
    needs = ("rgb",)

    def describe(self, frames: list[np.ndarray]) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def caption(self, views: list[View]) -> list[Caption]:
        frames = []
        for v in views:
            if v.rgb is None:
                raise ValueError(f"the {self.name} captioner needs the rgb sensor")
            frames.append(v.rgb)
        vocab = text_vocabulary()
        return [parse_caption(t, vocab) for t in self.describe(frames)]


def _rgb_images(frames: list[np.ndarray]) -> list[Any]:
    from PIL import Image

    out = []
    for f in frames:
        f = np.asarray(f)
        if f.ndim == 2:
            f = np.repeat(f[:, :, None], 3, axis=2)
        out.append(Image.fromarray(np.ascontiguousarray(f[:, :, :3]).astype(np.uint8)))
    return out


class HFCaptioner(_PixelCaptioner):
    """A transformers image-to-text model (BLIP, GIT, ...) from a folder or the HF cache.

    Example:
        >>> cap = make_captioner("hf:Salesforce/blip-image-captioning-base")  # cached
        >>> cap = make_captioner("hf:/models/my-blip")  # a save_pretrained folder
    """

    name = "hf"

    def __init__(
        self,
        model: str = "",
        max_new_tokens: int = 30,
        num_beams: int = 1,
        prompt: str | None = None,
        batch_size: int = 8,
        device: str = "cpu",
    ):
        source, local_only, ident = resolve_hf(model, "hf")
        try:
            import torch  # noqa: F401
            import transformers
        except ImportError as e:
            raise VlnavError(f"the hf captioner needs {e.name}: pip install -e '.[llm]'") from None
        self.model_id = model
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self.prompt = prompt
        self.batch_size = batch_size
        self.device = device
        try:
            config = transformers.AutoConfig.from_pretrained(source, local_files_only=local_only)
            cls_name = HF_CLASSES.get(config.model_type)
            if cls_name is not None:
                cls = getattr(transformers, cls_name)
            else:
                cls = (
                    getattr(transformers, "AutoModelForImageTextToText", None)
                    or transformers.AutoModelForVision2Seq
                )
            self.processor = transformers.AutoProcessor.from_pretrained(
                source, local_files_only=local_only
            )
            self.model = cls.from_pretrained(source, local_files_only=local_only).to(device)
        except Exception as e:  # noqa: BLE001 - any failure means: this checkpoint cannot be used
            raise VlnavError(f"cannot load hf captioner '{model}': {_first_line(e)}") from None
        self.model.eval()
        revision = getattr(config, "_commit_hash", None) or ""
        self._identity = (
            f"hf-{ident}-{revision[:12]}-t{max_new_tokens}-b{num_beams}-p{prompt or ''}"
        )

    @property
    def identity(self) -> str:
        return self._identity

    def describe(self, frames: list[np.ndarray]) -> list[str]:
        import torch

        texts: list[str] = []
        for i in range(0, len(frames), self.batch_size):
            images = _rgb_images(frames[i : i + self.batch_size])
            kwargs: dict[str, Any] = {"images": images, "return_tensors": "pt"}
            if self.prompt:
                kwargs["text"] = [self.prompt] * len(images)
            inputs = self.processor(**kwargs).to(self.device)
            with torch.inference_mode():
                ids = self.model.generate(
                    **inputs, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams
                )
            texts += [
                sentence(t) for t in self.processor.batch_decode(ids, skip_special_tokens=True)
            ]
        return texts


def import_open_clip() -> Any:
    """``open_clip``, or a one-line VlnavError saying why it cannot be used here."""
    try:
        import open_clip
    except ImportError as e:
        if e.name == "open_clip":
            raise VlnavError(
                "open_clip_torch is not installed (pip install open_clip_torch; it also needs a "
                "torchvision built for the installed torch, and PyPI's torchvision is a CUDA "
                "build that does not import beside a CPU torch)"
            ) from None
        if e.name == "torchvision":
            raise VlnavError(
                "open_clip needs torchvision, which is not installed (install one built for the "
                "installed torch: PyPI's torchvision is a CUDA build that fails beside a CPU torch)"
            ) from None
        raise VlnavError(f"open_clip cannot be imported: {_first_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - e.g. torchvision's ops missing beside a CPU torch
        raise VlnavError(
            f"open_clip cannot be imported ({_first_line(e)}): its torchvision does not match "
            "the installed torch"
        ) from None
    return open_clip


def open_clip_unusable() -> str | None:
    """Why open_clip cannot be used on this machine, or None when it can."""
    try:
        import_open_clip()
    except VlnavError as e:
        return str(e)
    return None


OPEN_CLIP_CONFIG = "open_clip_config.json"  # open_clip's HF-hub layout: config + weights
OPEN_CLIP_WEIGHTS = ("*.safetensors", "*.bin", "*.pth")  # what open_clip looks for in a folder


def resolve_open_clip(spec: str, what: str) -> tuple[str, str | None, str]:
    """``<spec>`` -> (model name for open_clip, pretrained or None, identity), checked before
    open_clip is imported. Accepted specs:

    * ``<folder>`` or ``local-dir:<folder>``: a folder in open_clip's HF-hub layout
      (``open_clip_config.json`` and ``open_clip_pytorch_model.bin`` / ``*.safetensors``), e.g. a
      downloaded ``laion/CoCa-ViT-B-32-laion2B-s13B-b90k`` snapshot;
    * ``<model>@<weights file>``: a built-in config (``coca_ViT-B-32``) and a state-dict file;
    * ``<model>@<pretrained tag>`` or ``hf-hub:<org/repo>``: resolved by open_clip through the
      Hugging Face cache (``HF_HUB_OFFLINE=1`` for no download).
    """
    if not spec:
        raise VlnavError(
            f"{what} needs a model: {what}:<folder with {OPEN_CLIP_CONFIG}> or "
            f"{what}:coca_ViT-B-32@/path/to/open_clip_pytorch_model.bin"
        )
    if spec.startswith("hf-hub:"):
        return spec, None, spec
    folder = spec.removeprefix("local-dir:")
    as_folder = Path(spec).expanduser().is_dir() or ("@" not in spec and _looks_like_path(spec))
    if folder != spec or as_folder:
        p = Path(folder).expanduser()
        if not p.is_dir():
            raise VlnavError(f"{what} model folder not found: {p}")
        if not (p / OPEN_CLIP_CONFIG).is_file():
            raise VlnavError(f"{what} model folder {p} has no {OPEN_CLIP_CONFIG}")
        if not any(f.is_file() for pat in OPEN_CLIP_WEIGHTS for f in p.glob(pat)):
            raise VlnavError(
                f"{what} model folder {p} has no weights ({', '.join(OPEN_CLIP_WEIGHTS)})"
            )
        return f"local-dir:{p}", None, f"{p.name}-{folder_digest(p)}"
    name, _, pretrained = spec.partition("@")
    if not name:
        raise VlnavError(f"{what} needs a model name, e.g. {what}:coca_ViT-B-32@/path/to/weights")
    if not pretrained:
        # open_clip would build the model with random weights (a warning in its log)
        raise VlnavError(
            f"{what}:{spec} has no weights: use {what}:{name}@<weights file or pretrained tag> "
            f"or a folder with {OPEN_CLIP_CONFIG} and the weights"
        )
    if Path(pretrained).expanduser().exists() or _looks_like_path(pretrained):
        p = Path(pretrained).expanduser()
        if not p.is_file():
            raise VlnavError(f"{what} weights not found: {p}")
        st = p.stat()
        return name, str(p), f"{name}-{p.name}-{st.st_size}-{st.st_mtime_ns}"
    return name, pretrained, f"{name}-{pretrained}"


def load_open_clip(spec: str, what: str, device: str = "cpu") -> tuple[Any, Any, str, str]:
    """``spec`` (see :func:`resolve_open_clip`) -> (model in eval mode, inference preprocess,
    identity, the model name open_clip knows it by)."""
    open_clip = import_open_clip()
    name, pretrained, ident = resolve_open_clip(spec, what)
    if name.startswith("local-dir:"):
        where = name.removeprefix("local-dir:")
    else:
        where = pretrained if pretrained and Path(pretrained).is_file() else spec
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device
        )
    except Exception as e:  # noqa: BLE001 - a corrupt or mismatched checkpoint, a failed download
        raise VlnavError(f"cannot load {what} model from {where}: {_first_line(e)}") from None
    model.eval()
    return model, preprocess, ident, name


def coca_generate(
    model: Any,
    images: Any,
    sot: int,
    eot: int,
    pad: int = 0,
    seq_len: int = 30,
    min_len: int = 5,
    num_beams: int = 1,
) -> list[list[int]]:
    """Caption token ids (without start/end tokens) for a batch of preprocessed images, by beam
    search over a CoCa model's text decoder (greedy when ``num_beams`` is 1).

    Like open_clip's ``CoCa.generate``: sequences start with ``sot``, hold at most ``seq_len``
    tokens (``eot`` is forced at the last place) and ``eot`` is barred while they are shorter
    than ``min_len``; a finished beam scores its summed log-probability over its length. It
    uses only the model's ``_encode_image`` and ``forward``, so it does not need transformers'
    generation classes (``CoCa.generate`` needs ``BeamSearchScorer``, gone in transformers 5).
    """
    import torch

    n, k = images.shape[0], num_beams
    latent, embs = model._encode_image(images)
    latent, embs = latent.repeat_interleave(k, 0), embs.repeat_interleave(k, 0)
    seqs = torch.full((n * k, 1), sot, dtype=torch.long, device=images.device)
    scores = [[0.0] + [-math.inf] * (k - 1) for _ in range(n)]
    done: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
    for length in range(1, seq_len):
        if all(len(d) >= k for d in done):
            break
        out = model(None, seqs, image_latent=latent, image_embs=embs, output_labels=False)
        logits = out["logits"][:, -1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        if length < min_len:
            logp[:, eot] = -math.inf
        if length + 1 == seq_len:  # the last place: only the end token
            keep = logp[:, eot].clone()
            logp.fill_(-math.inf)
            logp[:, eot] = keep
        vocab = logp.shape[1]
        cand = (torch.tensor(scores, device=logp.device).view(-1, 1) + logp).view(n, -1)
        top_s, top_i = cand.topk(min(2 * k, cand.shape[1]), dim=1)
        rows, toks, new_scores = [], [], []
        for b in range(n):
            beams: list[tuple[int, int, float]] = []
            if len(done[b]) < k:
                for s, i in zip(top_s[b].tolist(), top_i[b].tolist()):
                    if s == -math.inf or len(beams) == k or len(done[b]) >= k:
                        break
                    beam, tok = divmod(i, vocab)
                    if tok == eot:
                        tokens = seqs[b * k + beam, 1:].tolist()
                        done[b].append((s / (len(tokens) + 1), tokens))
                    else:
                        beams.append((b * k + beam, tok, s))
            beams += [(b * k, pad, -math.inf)] * (k - len(beams))  # dead beams
            rows += [r for r, _, _ in beams]
            toks += [t for _, t, _ in beams]
            new_scores.append([s for _, _, s in beams])
        seqs = torch.cat([seqs[rows], torch.tensor(toks, device=seqs.device)[:, None]], dim=1)
        scores = new_scores
    best = []
    for b in range(n):
        if not done[b]:  # cannot happen (the end token is forced), but never return nothing
            done[b].append((0.0, seqs[b * k, 1:].tolist()))
        best.append(max(done[b], key=lambda d: d[0])[1])
    return best


class OpenClipCaptioner(_PixelCaptioner):
    """CoCa captioning through ``open_clip``, from a local checkpoint or the HF cache.

    The text is generated here by :func:`coca_generate` (greedy, or beam search with
    ``num_beams`` > 1) and decoded with the model's open_clip tokenizer.

    Example:
        >>> cap = make_captioner("open_clip:/models/CoCa-ViT-B-32")  # open_clip_config.json + weights
        >>> cap = make_captioner("open_clip:coca_ViT-B-32@/models/open_clip_pytorch_model.bin")
    """

    name = "open_clip"

    def __init__(
        self,
        model: str = "",
        seq_len: int = 30,
        num_beams: int = 1,
        min_len: int = 5,
        batch_size: int = 8,
        device: str = "cpu",
    ):
        if not 1 <= min_len < seq_len:
            raise VlnavError(f"open_clip needs 1 <= min_len < seq_len (got {min_len}, {seq_len})")
        if num_beams < 1:
            raise VlnavError(f"open_clip needs num_beams >= 1 (got {num_beams})")
        self.model, self.preprocess, ident, name = load_open_clip(model, "open_clip", device)
        if not hasattr(self.model, "text_decoder"):
            raise VlnavError(
                f"open_clip model '{model}' cannot caption ({type(self.model).__name__} has no "
                "text decoder): use a CoCa model (coca_ViT-B-32, coca_ViT-L-14, ...)"
            )
        context = int(getattr(self.model, "context_length", seq_len))
        if seq_len > context + 1:
            raise VlnavError(f"open_clip seq_len {seq_len} exceeds the model's {context + 1}")
        import open_clip

        try:
            self.tokenizer = open_clip.get_tokenizer(name)
        except Exception as e:  # noqa: BLE001
            raise VlnavError(
                f"cannot load the tokenizer of open_clip '{model}': {_first_line(e)}"
            ) from None
        if not all(hasattr(self.tokenizer, a) for a in ("sot_token_id", "eot_token_id", "decode")):
            raise VlnavError(
                f"open_clip model '{model}' uses {type(self.tokenizer).__name__}: only CoCa models "
                "with open_clip's own (CLIP BPE) tokenizer can caption here"
            )
        self.seq_len = seq_len
        self.num_beams = num_beams
        self.min_len = min_len
        self.batch_size = batch_size
        self.device = device
        self._identity = f"open_clip-{ident}-s{seq_len}-b{num_beams}-m{min_len}"

    @property
    def identity(self) -> str:
        return self._identity

    def describe(self, frames: list[np.ndarray]) -> list[str]:
        import torch

        tok = self.tokenizer
        texts: list[str] = []
        for i in range(0, len(frames), self.batch_size):
            images = _rgb_images(frames[i : i + self.batch_size])
            x = torch.stack([self.preprocess(im) for im in images]).to(self.device)
            with torch.inference_mode():
                ids = coca_generate(
                    self.model,
                    x,
                    sot=int(tok.sot_token_id),
                    eot=int(tok.eot_token_id),
                    pad=int(getattr(self.model, "pad_id", 0)),
                    seq_len=self.seq_len,
                    min_len=self.min_len,
                    num_beams=self.num_beams,
                )
            for row in ids:
                t = tok.decode(row).replace("<start_of_text>", "").split("<end_of_text>")[0]
                texts.append(sentence(t))
        return texts
