"""Typed configuration: pydantic models with profiles, file overrides and env overrides.

Precedence, lowest to highest: field defaults < profile < config file
(YAML or TOML) < environment variables (``PREFIX__FIELD__SUB=value``) <
explicit overrides (CLI options). Nothing is read at import time.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import ConfigError

C = TypeVar("C", bound="LevelConfig")


def validation_problems(exc: ValidationError) -> str:
    """One line naming each problem of a pydantic validation error (``loc: message; ...``)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )


class LevelConfig(BaseModel):
    """Base class for a level's config.

    Subclasses set ``PROFILES`` (name -> partial dict of overrides) and
    ``ENV_PREFIX`` (e.g. ``"L1"``). Unknown keys are rejected so that typos
    in a config file are caught. ``ENV_SECTIONS_ELSEWHERE`` names the sections of the
    level's ``L<N>__SECTION__FIELD`` variables that belong to other settings objects (a
    service's own settings, read by pydantic-settings), so the config does not reject them.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "full": {}}
    ENV_PREFIX: ClassVar[str] = ""
    ENV_SECTIONS_ELSEWHERE: ClassVar[tuple[str, ...]] = ()

    profile: str = "quick"
    seed: int = 42


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge `update` into a copy of `base` (dicts merge, anything else replaces)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON file into a dict."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix in {".yaml", ".yml"}:
            data = yaml.safe_load(text) or {}
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {p} must end in .yaml, .yml, .toml or .json")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot parse config file {p}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return data


def env_overrides(
    prefix: str, environ: Mapping[str, str] | None = None, *, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Collect ``PREFIX__A__B=value`` variables into ``{"a": {"b": value}}``.

    Values are parsed as YAML scalars, so ``5``, ``0.1``, ``true`` and ``[1, 2]`` get their types.
    Sections named in `skip` (lower case) are left out.
    """
    if not prefix:
        return {}
    environ = os.environ if environ is None else environ
    marker = prefix.upper() + "__"
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.upper().startswith(marker):
            continue
        parts = [p.lower() for p in key[len(marker) :].split("__") if p]
        if not parts or parts[0] in skip:
            continue
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def load_config(
    cls: type[C],
    *,
    profile: str | None = None,
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> C:
    """Build a validated config of type `cls`.

    Args:
        cls: The level's `LevelConfig` subclass.
        profile: Profile name (``quick`` or ``full``); the file or env may also set it.
        path: Optional YAML/TOML/JSON file with overrides.
        overrides: Explicit values (CLI options); ``None`` values are ignored.
        environ: Environment to read (defaults to ``os.environ``).

    Raises:
        ConfigError: Unknown profile, unreadable file or invalid values (one line per problem).
    """
    file_data = read_config_file(path) if path is not None else {}
    env_data = env_overrides(cls.ENV_PREFIX, environ, skip=cls.ENV_SECTIONS_ELSEWHERE)
    explicit = {k: v for k, v in (overrides or {}).items() if v is not None}
    name = profile or explicit.get("profile") or env_data.get("profile") or file_data.get("profile")
    name = name or "quick"
    if name not in cls.PROFILES:
        known = ", ".join(sorted(cls.PROFILES))
        raise ConfigError(f"unknown profile {name!r}; choose one of: {known}")
    merged: dict[str, Any] = deep_merge(cls.PROFILES[name], file_data)
    merged = deep_merge(merged, env_data)
    merged = deep_merge(merged, explicit)
    merged["profile"] = name
    try:
        return cls.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"invalid {cls.__name__}: {validation_problems(exc)}") from None
