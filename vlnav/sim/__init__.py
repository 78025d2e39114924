"""Simulator backends: the protocol, the builtin renderer and navigation grid, the Habitat adapter."""
