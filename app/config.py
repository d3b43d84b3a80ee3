"""Configuration: config_default.py ⊕ per-environment defaults ⊕ config_override.py ⊕ environment.

``configs`` is what code reads (``configs.sms.code_ttl`` or ``configs["sms"]["code_ttl"]``). Inside an
application context it is that application's settings, so several apps with different settings can
live in one process (tests do); outside one it is the process-wide settings, loaded on first use.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, has_app_context

PROJECT_DIR = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("development", "production", "testing")
MAIL_BACKENDS = ("smtp", "console")
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


class ConfigError(Exception):
    """The settings are unusable; the message says which and why."""


class Configs(dict):
    """A dict whose keys also read as attributes, nested dicts included."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no setting named {name!r}") from None

    @classmethod
    def wrap(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return cls({k: cls.wrap(v) for k, v in value.items()})
        return value


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
    spec.loader.exec_module(module)
    return module


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
        raise ConfigError(f"environment variable {name}={raw!r} is not a valid {kind}: {exc}") from None
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


def production_problems(settings: Mapping, default_secret: str) -> list[str]:
    """Why these settings are unsafe to serve in production (empty when they are fine)."""
    problems = []
    secret = settings["app"]["secret_key"]
    if not secret or secret == default_secret:
        problems.append("SECRET_KEY is the development default; set a long random one")
    elif len(secret) < 32:
        problems.append("SECRET_KEY is shorter than 32 characters")
    if settings["app"]["debug"]:
        problems.append("debug is on (app.debug); turn it off")
    if str(settings["redis"]["url"]).startswith("memory://"):
        problems.append("the Redis URL is memory://, which is one process only; set REDIS_URL to a real server")
    if not settings["app"]["public_url"]:
        problems.append("app.public_url is empty; set it to the API's public base URL, e.g. https://api.example.com "
                        "(APP_APP__PUBLIC_URL)")
    if settings["mail"]["backend"] != "smtp":
        problems.append(f"mail.backend is {settings['mail']['backend']!r}, which only logs mails; set it to smtp")
    return problems


def setting_problems(settings: Mapping) -> list[str]:
    """Values no environment can use (empty when all are fine)."""
    problems = []
    public_url = settings["app"]["public_url"]
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            problems.append(f"app.public_url {public_url!r} is not an absolute http(s) URL like https://api.example.com")
    if settings["mail"]["backend"] not in MAIL_BACKENDS:
        problems.append(f"mail.backend must be one of {', '.join(MAIL_BACKENDS)}, not {settings['mail']['backend']!r}")
    return problems


def load_configs(
    overrides: Mapping | None = None,
    environ: Mapping[str, str] | None = None,
    directory: Path = PROJECT_DIR,
) -> Configs:
    """Build the settings from every layer; raise ConfigError when they are unusable.

    ``directory`` holds config_default.py and config_override.py; ``environ`` defaults to os.environ.
    """
    environ = os.environ if environ is None else environ
    default_module = _load_module("config_default", directory)
    if default_module is None:
        raise ConfigError(f"config_default.py is missing from {directory}")
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

    _merge(settings, getattr(default_module, "env_defaults", {}).get(env_name, {}), "config_default.env_defaults")
    _merge(settings, file_settings, "config_override.py")
    _merge(settings, env_settings, "the environment")
    _merge(settings, explicit, "create_app() overrides")
    settings["app"]["env"] = env_name

    problems = setting_problems(settings)
    if problems:
        raise ConfigError("; ".join(problems))
    if env_name == "production":
        problems = production_problems(settings, default_module.configs["app"]["secret_key"])
        if problems:
            raise ConfigError("refusing to start in production: " + "; ".join(problems))
    return Configs.wrap(settings)


class _CurrentConfigs:
    """Reads through to the current app's settings, or to the process-wide ones."""

    _process: Configs | None = None

    def _target(self) -> Configs:
        if has_app_context():
            return current_app.extensions["configs"]
        if _CurrentConfigs._process is None:
            _CurrentConfigs._process = load_configs()
        return _CurrentConfigs._process

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __getitem__(self, key: str) -> Any:
        return self._target()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._target()

    def __iter__(self) -> Iterator[str]:
        return iter(self._target())

    def get(self, key: str, default: Any = None) -> Any:
        return self._target().get(key, default)

    def __repr__(self) -> str:
        return f"<configs sections={sorted(self._target())}>"  # values may be secrets


configs = _CurrentConfigs()
