"""Pretrained pixel captioners: ``hf:<model id or path>`` and ``open_clip:<model>[@<weights>]``.

``hf`` loads a transformers image-to-text model (BLIP ``BlipForConditionalGeneration``, GIT
``GitForCausalLM``, or anything ``AutoModelForImageTextToText`` knows) with its
``AutoProcessor``, from a local folder (``save_pretrained`` output) or the Hugging Face cache;
with ``HF_HUB_OFFLINE=1`` (or a local folder) nothing is downloaded (``local_files_only``).

``open_clip`` captions with a CoCa model through ``open_clip``'s ``generate``; the weights are
a local file or a pretrained tag found in the cache (``coca_ViT-B-32@/path/to/weights.bin``).
open_clip imports torchvision, which must be built for the installed torch (the PyPI
torchvision wheel is a CUDA build that fails to import beside the CPU torch); where it cannot
be imported the captioner fails when constructed, with the reason, in one line.

The free text is turned into a :class:`Caption` by :func:`vlnav.perception.text.parse_caption`
(room, object categories, colours, sides of the house vocabulary).
"""

from __future__ import annotations

import hashlib
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


def load_open_clip(spec: str, what: str) -> tuple[Any, Any, str]:
    """``<model>[@<weights file or pretrained tag>]`` -> (model, preprocess, identity)."""
    name, _, pretrained = spec.partition("@")
    if not name:
        raise VlnavError(f"{what} needs a model name, e.g. {what}:coca_ViT-B-32@/path/to/weights")
    ident = pretrained
    if pretrained and (Path(pretrained).exists() or _looks_like_path(pretrained)):
        p = Path(pretrained).expanduser()
        if not p.is_file():
            raise VlnavError(f"{what} weights not found: {p}")
        st = p.stat()
        ident = f"{p.name}-{st.st_size}-{st.st_mtime_ns}"
        pretrained = str(p)
    open_clip = import_open_clip()
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained or None
        )
    except Exception as e:  # noqa: BLE001
        raise VlnavError(f"cannot load {what} model '{spec}': {_first_line(e)}") from None
    model.eval()
    return model, preprocess, f"{name}-{ident}"


class OpenClipCaptioner(_PixelCaptioner):
    """CoCa captioning through ``open_clip`` (``open_clip:coca_ViT-B-32@<weights>``)."""

    name = "open_clip"

    def __init__(self, model: str = "", seq_len: int = 30, batch_size: int = 8):
        self.model, self.preprocess, ident = load_open_clip(model, "open_clip")
        if not hasattr(self.model, "generate"):
            raise VlnavError(
                f"open_clip model '{model}' cannot caption: use a CoCa model (coca_ViT-B-32, ...)"
            )
        self.seq_len = seq_len
        self.batch_size = batch_size
        self._identity = f"open_clip-{ident}-s{seq_len}"

    @property
    def identity(self) -> str:
        return self._identity

    def describe(self, frames: list[np.ndarray]) -> list[str]:
        import open_clip
        import torch

        texts: list[str] = []
        for i in range(0, len(frames), self.batch_size):
            images = _rgb_images(frames[i : i + self.batch_size])
            x = torch.stack([self.preprocess(im) for im in images])
            with torch.inference_mode():
                ids = self.model.generate(x, seq_len=self.seq_len)
            for row in ids:
                t = open_clip.decode(row).split("<end_of_text>")[0]
                texts.append(sentence(t.replace("<start_of_text>", "")))
        return texts
