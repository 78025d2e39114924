"""Procedural houses: the SceneSpec format, the generator and the mesh export."""

from vlnav.scenes.spec import Door, Room, SceneObject, SceneSpec, Wall

__all__ = ["Door", "Room", "SceneObject", "SceneSpec", "Wall"]
