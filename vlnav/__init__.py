"""vlnav: language-driven vision-and-language navigation.

Importing the package needs no optional dependency (no torch, no habitat-sim, no GL):
heavy parts are imported lazily where they are used.
"""

__version__ = "0.1.0"


class VlnavError(Exception):
    """A user-facing error: its message is one line that names the problem."""


def _register_envs() -> None:
    # Gymnasium's convention: register by lazy entry-point string; nothing heavy is imported.
    import gymnasium

    if "vlnav/VLN-v0" not in gymnasium.registry:
        gymnasium.register(id="vlnav/VLN-v0", entry_point="vlnav.env:VLNEnv")


_register_envs()


def __getattr__(name: str):
    # the deployable agent (vlnav.deploy), imported on first use: it needs torch, vlnav doesn't
    if name in ("Agent", "Action"):
        from vlnav import deploy

        return getattr(deploy, name)
    raise AttributeError(f"module 'vlnav' has no attribute {name!r}")
