"""YAML config files and their validation errors: the one place that turns a missing or
malformed file, or a value pydantic rejects, into a single :class:`~legato.errors.LegatoError`
line."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from legato.errors import LegatoError


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (an empty file gives ``{}``)."""
    path = Path(path)
    if path.is_dir():
        raise LegatoError(f"{path} is a folder, not a YAML config file")
    if not path.is_file():
        raise LegatoError(f"config file not found: {path}")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise LegatoError(f"{path} is not a text (YAML) file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LegatoError(f"cannot parse {path}: {yaml_error_line(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LegatoError(f"{path}: the config must be a mapping of keys to values")
    return data


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error, with its line and column (1-based)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    text = f"{context}, {problem}" if context else str(problem)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {text}"
    return text


def _owner(loc: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at ``loc`` (for key suggestions)."""
    cls: Any = root
    for part in loc[:-1]:
        if not isinstance(part, str):
            continue  # list index or dict key inside a container field
        fld = cls.model_fields.get(part) if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if fld is None:
            return None
        stack, cand = [fld.annotation], []
        while stack:  # look through Optional[...], list[...], dict[..., ...]
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                cand.append(ann)
            stack.extend(getattr(ann, "__args__", ()) or ())
        if not cand:
            return None
        cls = cand[0]
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def config_error(
    exc: ValidationError, root: type[BaseModel] | None = None, source: str | None = "config"
) -> LegatoError:
    """The one-line LegatoError for a pydantic ValidationError of ``root``.

    An unknown key is reported first (it explains a "missing" misspelt key), with the
    nearest valid name; otherwise the first error names its key and the rejected value.
    Without ``source`` the line has no prefix and an error of the whole object names the
    object's class (a value set outside a config file, e.g. from a command-line option).
    """
    errs = exc.errors()
    err = next((e for e in errs if e["type"] == "extra_forbidden"), errs[0])
    loc = tuple(err["loc"])
    where = ".".join(str(p) for p in loc) or ("" if source else exc.title)
    prefix = f"{source}: " if source else ""
    if err["type"] == "extra_forbidden":
        owner = _owner(loc, root) if root is not None else None
        valid = list(owner.model_fields) if owner is not None else []
        near = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else (f" (valid: {', '.join(valid)})" if valid else "")
        return LegatoError(f"{prefix}unknown key '{where}'{hint}")
    if err["type"] == "missing":
        return LegatoError(f"{prefix}missing required key '{where}'")
    msg = err["msg"].removeprefix("Value error, ")
    if not where:
        return LegatoError(f"{prefix}{msg}")
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    return LegatoError(f"{prefix}invalid value for '{where}': {msg}{shown}")


def validate_model(root: type[BaseModel], data: Any, source: str = "config") -> Any:
    """``root.model_validate(data)`` with any problem as one LegatoError line."""
    if not isinstance(data, dict):
        raise LegatoError(f"{source}: the top level must be a mapping of keys to values")
    try:
        return root.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, root, source) from None


def parse_floats(text: str, flag: str) -> list[float]:
    """Comma-separated numbers of a command-line option (empty items skipped)."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LegatoError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def parse_number(text: str) -> Any:
    """``text`` as an int or a float where it is one, else unchanged (CSV cells, CLI values)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
