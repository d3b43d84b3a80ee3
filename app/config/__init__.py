"""Settings: config_default.py ⊕ per-environment defaults ⊕ config_override.py ⊕ environment, as typed sections.

Code reads attributes: ``configs.sms.code_ttl``. Inside an application context ``configs`` is that app's settings,
so several apps with different settings can live in one process (tests do); outside one it is the process-wide
settings, loaded on first use. Where you hold an app but no context (the server's start, an extension's
``init_app``, a test), ``settings_of(app)`` gives the same object.
"""

from __future__ import annotations

from typing import Any, cast

from flask import Flask, current_app
from werkzeug.local import LocalProxy

from app.config.checks import ConfigError
from app.config.flask_config import flask_settings
from app.config.loading import PROJECT_DIR, load_configs, project_path
from app.config.sections import Settings, attribute_names

__all__ = [
    "PROJECT_DIR", "ConfigError", "Settings", "configs", "load_configs", "project_path", "settings_of", "use_settings",
]

_EXTENSION = "settings"  # the key of app.extensions that holds an app's Settings


def use_settings(app: Flask, settings: Settings) -> None:
    """Make ``settings`` the app's: what ``configs`` and ``settings_of`` read, and Flask's config derived from it."""
    app.extensions[_EXTENSION] = settings
    app.config.update(flask_settings(settings))


def settings_of(app: Flask) -> Settings:
    """The settings of ``app``, for code that holds the app outside its context."""
    return cast(Settings, app.extensions[_EXTENSION])


_app_proxy = cast("LocalProxy[Flask]", current_app)  # typed as Flask by Flask; it is the proxy


class _Process:
    settings: Settings | None = None


def _current() -> Settings:
    try:
        # The proxy's documented way to its object: reading ``current_app.extensions`` through the proxy costs
        # about ten times more, and settings are read on every request.
        app = _app_proxy._get_current_object()
    except RuntimeError:  # no application context
        if _Process.settings is None:
            _Process.settings = load_configs()
        return _Process.settings
    return cast(Settings, app.extensions[_EXTENSION])


class _CurrentSettings:
    """Reads through to the current app's settings, or to the process-wide ones; one property per section."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        return _current()[key]

    def __repr__(self) -> str:
        return f"<configs sections={sorted(attribute_names(Settings))}>"  # values may be secrets


def _section(name: str) -> property:
    return property(lambda _self: getattr(_current(), name), doc=f"The current settings' {name}.")


for _name in attribute_names(Settings).values():
    setattr(_CurrentSettings, _name, _section(_name))

# Typed as Settings so mypy and IDEs know every section and key; it forwards to the current app's Settings.
configs: Settings = cast(Settings, _CurrentSettings())
