"""Visual features for fusion: one embedding per view, from one interface.

Backends, registered by name with lazy ``"module:Class"`` strings:

* ``learned:<checkpoint>``: the learned captioner's CNN encoder, mean-pooled (offline, here);
* ``hf-clip:<model id or path>``: transformers ``CLIPVisionModelWithProjection`` image embeds
  (L2-normalised), from a folder or the HF cache (no torchvision needed);
* ``open_clip:<folder>`` or ``open_clip:<model>@<weights>``: ``open_clip``'s ``encode_image``
  (L2-normalised); the specs of the ``open_clip`` captioner.

``panorama_features`` gives the (12, D) features of the agent's 12-view panorama, cached per
view in an :class:`~vlnav.perception.cache.ObservationCache` (``kind="feat"``) keyed by scene,
pose, heading and the encoder's identity.

Example:
    >>> enc = make_feature_encoder("learned:runs/captioner")
    >>> enc.encode([frame]).shape
    (1, 128)
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vlnav import VlnavError


@runtime_checkable
class FeatureEncoder(Protocol):
    name: str

    @property
    def dim(self) -> int: ...

    @property
    def identity(self) -> str:
        """Changes whenever the features could change: the cache key."""
        ...

    def encode(self, frames: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 frames (any size) -> (N, dim) float32."""
        ...


FEATURE_ENCODERS: dict[str, str] = {
    "learned": "vlnav.perception.features:LearnedFeatures",
    "hf-clip": "vlnav.perception.features:HFClipFeatures",
    "open_clip": "vlnav.perception.features:OpenClipFeatures",
}


def make_feature_encoder(spec: str, **kwargs: Any) -> FeatureEncoder:
    """``learned:<checkpoint>``, ``hf-clip:<model id or path>``, ``open_clip:<folder> | open_clip:<model>@<weights>``."""
    name, _, arg = spec.partition(":")
    if name not in FEATURE_ENCODERS:
        raise VlnavError(f"unknown feature encoder '{spec}' (known: {', '.join(FEATURE_ENCODERS)})")
    module, cls = FEATURE_ENCODERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(arg, **kwargs)


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class LearnedFeatures:
    """The learned captioner's image encoder: mean of its feature grid, (N, d_model)."""

    name = "learned"

    def __init__(self, checkpoint: str = "", batch_size: int = 64):
        from vlnav.perception.learned import DEFAULT_CHECKPOINT, LearnedCaptioner

        self.captioner = LearnedCaptioner(checkpoint or DEFAULT_CHECKPOINT, batch_size=batch_size)

    @property
    def dim(self) -> int:
        return int(self.captioner.meta["model"]["d_model"])

    @property
    def identity(self) -> str:
        return f"feat-{self.captioner.identity}"

    def encode(self, frames: list[np.ndarray]) -> np.ndarray:
        return self.captioner.encode(list(frames))


class HFClipFeatures:
    """transformers ``CLIPVisionModelWithProjection`` image embeddings, L2-normalised."""

    name = "hf-clip"

    def __init__(self, model: str = "", batch_size: int = 32, device: str = "cpu"):
        from vlnav.perception.pretrained import _first_line, resolve_hf

        source, local_only, ident = resolve_hf(model, "hf-clip")
        try:
            import transformers
        except ImportError as e:
            raise VlnavError(f"hf-clip features need {e.name}: pip install -e '.[llm]'") from None
        try:
            self.processor = transformers.AutoImageProcessor.from_pretrained(
                source, local_files_only=local_only
            )
            self.model = transformers.CLIPVisionModelWithProjection.from_pretrained(
                source, local_files_only=local_only
            ).to(device)
        except Exception as e:  # noqa: BLE001
            raise VlnavError(f"cannot load hf-clip encoder '{model}': {_first_line(e)}") from None
        self.model.eval()
        self.batch_size = batch_size
        self.device = device
        self._identity = f"hf-clip-{ident}"

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def identity(self) -> str:
        return self._identity

    def encode(self, frames: list[np.ndarray]) -> np.ndarray:
        import torch

        from vlnav.perception.pretrained import _rgb_images

        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(frames), self.batch_size):
            images = _rgb_images(list(frames[i : i + self.batch_size]))
            x = self.processor(images=images, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                emb = self.model(pixel_values=x.to(self.device)).image_embeds  # (B, dim)
            out.append(emb.float().cpu().numpy())
        return _normalise(np.concatenate(out))


class OpenClipFeatures:
    """``open_clip`` image embeddings (``encode_image``), L2-normalised: any open_clip model
    (CLIP or CoCa) from the same specs as the ``open_clip`` captioner (a folder with
    ``open_clip_config.json`` and weights, ``<model>@<weights file or tag>``, ``hf-hub:<repo>``)."""

    name = "open_clip"

    def __init__(self, model: str = "", batch_size: int = 32, device: str = "cpu"):
        from vlnav.perception.pretrained import load_open_clip

        self.model, self.preprocess, ident, _ = load_open_clip(model, "open_clip", device)
        self.batch_size = batch_size
        self.device = device
        self._identity = f"open_clip-{ident}"
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._embed([np.zeros((32, 32, 3), np.uint8)]).shape[1])
        return self._dim

    @property
    def identity(self) -> str:
        return self._identity

    def _embed(self, frames: list[np.ndarray]) -> np.ndarray:
        import torch

        from vlnav.perception.pretrained import _rgb_images

        images = _rgb_images(list(frames))
        x = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        with torch.inference_mode():
            return self.model.encode_image(x).float().cpu().numpy()

    def encode(self, frames: list[np.ndarray]) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(frames), self.batch_size):
            out.append(self._embed(frames[i : i + self.batch_size]))
        return _normalise(np.concatenate(out))


def panorama_features(
    sim: Any, scene_id: str, encoder: FeatureEncoder, cache: Any = None, n_views: int = 12
) -> np.ndarray:
    """(n_views, dim) features of the panorama at the agent's pose, view k turned 360 k / n
    degrees to the left; each view is cached on its own (rendered only if one is missing)."""
    st = sim.agent_state()
    headings = [st.heading + 2 * math.pi * k / n_views for k in range(n_views)]
    keys = [None] * n_views
    feats: list[np.ndarray | None] = [None] * n_views
    if cache is not None:
        identity = encoder.identity
        tag = getattr(sim, "render_tag", "")  # the rendering domain's draw, if any
        if tag:
            identity = f"{identity}@{tag}"
        keys = [cache.key(scene_id, st.position, h, identity, kind="feat") for h in headings]
        feats = [cache.get(k) for k in keys]
    if any(f is None for f in feats):
        rgb = sim.panorama(n_views=n_views, sensors=("rgb",))["rgb"]
        missing = [k for k, f in enumerate(feats) if f is None]
        enc = encoder.encode([rgb[k] for k in missing])
        for k, f in zip(missing, enc):
            feats[k] = f
            if cache is not None:
                cache.put(keys[k], f)
    return np.stack(feats).astype(np.float32)
