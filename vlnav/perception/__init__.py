"""Perception to language: captioners, candidate views as text, visual features.

``semantic`` (default) captions from the instance-id and depth sensors plus the SceneSpec;
pixel-based captioners (``learned``, ``hf:<model>``, ``open_clip:<model>``) read only RGB.
"""

from vlnav.perception.base import Caption, Captioner, View, make_captioner

__all__ = ["Caption", "Captioner", "View", "make_captioner"]
