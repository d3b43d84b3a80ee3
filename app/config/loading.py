"""Loading: config_default.py ⊕ per-environment defaults ⊕ config_override.py ⊕ environment ⊕ overrides.

Each layer is a nested dict as users write it; each is checked against the typed sections (app/config/sections.py)
and the merged result becomes one frozen ``Settings``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from app.config.checks import ConfigError, build, check_types, production_problems, setting_problems
from app.config.sections import Settings

PROJECT_DIR = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("development", "production", "testing")
# Short environment variables and the keys they set.
ENV_ALIASES = {
    "DATABASE_URL": ("database", "url"),
    "REDIS_URL": ("redis", "url"),
    "SECRET_KEY": ("app", "secret_key"),
    "APP_ENV": ("app", "env"),
}
ENV_PREFIX = "APP_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def project_path(path: str) -> Path:
    """A configured path, relative ones taken from the project directory."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else PROJECT_DIR / candidate


def _load_module(name: str, directory: Path = PROJECT_DIR) -> ModuleType | None:
    path = directory / f"{name}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"_settings_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(_load_failure(path, exc)) from None  # a traceback would quote the source: secrets
    return module


def _load_failure(path: Path, exc: Exception) -> str:
    """Why ``path`` could not be run, with its line but never its source text: a settings file holds secrets, and
    a traceback (or a SyntaxError's text, a NameError's name) would print them. A SyntaxError's own message names
    the mistake, not the value."""
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        return f"{path} line {exc.lineno}: {type(exc).__name__}: {exc.msg}"
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == str(path)]
    where = f" line {lines[-1]}" if lines else ""
    return f"{path}{where}: {type(exc).__name__} while loading it (the message is not shown: it may quote a secret)"


def _merge(base: dict, update: Mapping, source: str, path: str = "") -> None:
    """Deep-merge ``update`` into ``base``; a key the defaults do not have is an error."""
    for key, value in update.items():
        dotted = f"{path}{key}"
        if key not in base:
            raise ConfigError(f"unknown setting {dotted!r} in {source}; every key must exist in config_default.py")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"setting {dotted!r} in {source} must be a section (a dict)")
            _merge(base[key], value, source, dotted + ".")
        else:
            base[key] = copy.deepcopy(value)


def parse_value(raw: str, default: Any, name: str) -> Any:
    """Parse an environment string to the type of the setting's default."""
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(f"expected one of {sorted(_TRUE | _FALSE - {''})}")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, list):
            if raw.strip().startswith("["):
                value = json.loads(raw)
                if not isinstance(value, list):
                    raise ValueError("expected a JSON list")
                return value
            return [item.strip() for item in raw.split(",") if item.strip()]
        if isinstance(default, dict):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
    except ValueError as exc:
        kind = type(default).__name__
        hint = f": {exc}" if str(exc).startswith("expected") else ""  # our own hints; a parser's may quote the value
        raise ConfigError(f"environment variable {name} is not a valid {kind}{hint} (the value is not shown: it may "
                          "be a secret)") from None
    return raw


def _environment_updates(defaults: dict, environ: Mapping[str, str]) -> dict:
    """The settings that environment variables give, as a nested dict."""
    updates: dict = {}
    pairs: list[tuple[str, tuple[str, ...]]] = [
        (name, path) for name, path in ENV_ALIASES.items() if name in environ
    ]
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and "__" in name:
            parts = tuple(part.lower() for part in name[len(ENV_PREFIX):].split("__"))
            pairs.append((name, parts))
    for name, path in pairs:
        node: Any = defaults
        for part in path:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"environment variable {name} names no setting ({'.'.join(path)})")
            node = node[part]
        if isinstance(node, dict):
            raise ConfigError(f"environment variable {name} names a section, not a setting")
        target = updates
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = parse_value(environ[name], node, name)
    return updates


def load_configs(
    overrides: Mapping | None = None,
    environ: Mapping[str, str] | None = None,
    directory: Path = PROJECT_DIR,
) -> Settings:
    """Build the settings from every layer; raise ConfigError when they are unusable.

    ``directory`` holds config_default.py and config_override.py; ``environ`` defaults to os.environ.
    """
    environ = os.environ if environ is None else environ
    default_module = _load_module("config_default", directory)
    if default_module is None:
        raise ConfigError(f"config_default.py is missing from {directory}")
    check_types(default_module.configs, "config_default.py")
    settings: dict = copy.deepcopy(default_module.configs)
    override_module = _load_module("config_override", directory)
    file_settings: Mapping = getattr(override_module, "configs", {}) or {}
    env_settings = _environment_updates(settings, environ)
    explicit: Mapping = overrides or {}

    env_name = settings["app"]["env"]
    for layer in (file_settings, env_settings, explicit):
        env_name = layer.get("app", {}).get("env", env_name)
    if env_name not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env_name!r}")

    for layer, source in (
        (getattr(default_module, "env_defaults", {}).get(env_name, {}), "config_default.env_defaults"),
        (file_settings, "config_override.py"),
        (env_settings, "the environment"),
        (explicit, "create_app() overrides"),
    ):
        _merge(settings, layer, source)
        check_types(layer, source)
    settings["app"]["env"] = env_name
    typed: Settings = build(settings)

    if env_name == "production":
        problems = production_problems(typed, default_module.configs["app"]["secret_key"])
        if problems:
            raise ConfigError("refusing to start in production: " + "; ".join(problems))
    problems = setting_problems(typed)
    if problems:
        raise ConfigError("; ".join(problems))
    return typed
