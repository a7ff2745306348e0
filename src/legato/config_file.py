"""Reading YAML config files: the one place that turns a missing or malformed file into a
:class:`~legato.errors.LegatoError` line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from legato.errors import LegatoError


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (an empty file gives ``{}``)."""
    path = Path(path)
    if not path.is_file():
        raise LegatoError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise LegatoError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LegatoError(f"{path}: the config must be a mapping of keys to values")
    return data
