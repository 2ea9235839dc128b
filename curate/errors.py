"""The library's error types: one base class for every error a user can act on.

A `ThresherError` says what is wrong with the user's input (a config key, a
data file, a log) and what to do; the CLI prints it without a traceback and
exits with code 2. Anything else that escapes is a bug and keeps its traceback.

>>> issubclass(ConfigError, ThresherError) and issubclass(ConfigError, ValueError)
True
"""

from __future__ import annotations


class ThresherError(Exception):
    """An error the user can act on (bad config, unreadable input); the CLI exits with 2."""


class ConfigError(ThresherError, ValueError):
    """A config key is unknown or its value is invalid; the message names section, key and what is allowed."""


class DataError(ThresherError, ValueError):
    """Input data that cannot be read or does not fit the schema (names the file, line, column)."""
