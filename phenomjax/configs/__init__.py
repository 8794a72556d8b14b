"""The configs shipped with the package, one TOML file each beside this module.

packaged("demo")   # .../phenomjax/configs/demo.toml: the demo's transformer run
packaged("fit")    # the default fit grid; "fit_demo" the demo's, "analysis" the analysis'
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from ..errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9_-]+")


def names() -> list[str]:
    """The names of every packaged config, sorted."""
    folder = resources.files(__name__)
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def packaged(name: str) -> Path:
    """The path of the packaged config `name` (phenomjax/configs/<name>.toml); a ConfigError
    naming the known ones otherwise."""
    path = Path(str(resources.files(__name__) / f"{name}.toml"))
    if not _NAME.fullmatch(name) or not path.is_file():
        raise ConfigError(f"{name}: no packaged config of that name (known: {', '.join(names())})")
    return path
