"""The one error of the configuration (its own module so that every checker can raise it without a cycle)."""

from __future__ import annotations


class ConfigError(Exception):
    """The settings are unusable; the message says which and why."""
