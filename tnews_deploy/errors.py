"""User-facing errors.

`UserError` carries a message a person can act on; the CLI prints it as one line
and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (a path, a name, a size): say what and what to do."""


class DataError(UserError, ValueError):
    """A data source that cannot be read, or a bad row in it (the message names the file and line)."""


class ConfigError(UserError, ValueError):
    """An option value that cannot work (unknown variant, size too large, ...)."""


class ModelError(UserError, ValueError):
    """A model folder that cannot be loaded (missing weights, wrong files, ...)."""
