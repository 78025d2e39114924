"""Per-view visual features of a decision's panorama, for the policy's fusion layer.

A thin wrapper over ``vlnav.perception.features``: the encoder is named by a spec string
(``learned:<checkpoint>``, ``hf-clip:<path>``, ``open_clip:<model>``) stored in the policy
checkpoint, so a trained policy rebuilds the same encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlnav.perception.features import make_feature_encoder, panorama_features


class PanoramaFeatures:
    def __init__(self, encoder: Any, cache: Any = None) -> None:
        self.encoder = encoder
        self.cache = cache

    @classmethod
    def from_spec(cls, spec: dict[str, Any], cache: Any = None) -> PanoramaFeatures:
        return cls(make_feature_encoder(spec["encoder"]), cache)

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    def panorama_features(self, sim: Any, scene_id: str, obs: Any = None) -> np.ndarray:
        """(12, dim) features at the agent's current pose (view k: 30 k degrees left)."""
        return panorama_features(sim, scene_id, self.encoder, self.cache)
