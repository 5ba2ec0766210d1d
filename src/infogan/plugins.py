"""Dataset presets plug into the core through the ``infogan.presets`` entry-point group
(pyproject.toml): loading one registers its objective terms and attribute sets. The core
never imports a preset by name."""
from __future__ import annotations

from importlib.metadata import entry_points

_loaded = False


def load_presets() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for entry in entry_points(group="infogan.presets"):
            entry.load()
