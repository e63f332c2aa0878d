"""The one base class of every error a tinytwin user can act on.

Each subclass's message is one sentence that names the thing and the fix
(``ModelError``: a model file; ``TransportError``: a port or link;
``RigError`` / ``ExternalError``: a bench; ``ConfigError``: a setting of a
twin, e.g. a ``tinytwin://`` option or a profile file; the runner's
``RunnerError``).
The command-line front ends catch :class:`TinytwinError` only: anything else
is a bug and shows its traceback.

This module imports nothing, so the host runner may use it without pulling in
the simulation.
"""
from __future__ import annotations


class TinytwinError(Exception):
    """An error whose message tells the user what to do."""


class ConfigError(TinytwinError, ValueError):
    """A twin's setting is wrong (an unknown option, a bad value, a profile
    file that cannot be used); the message names the setting and the fix.

    It is also a :class:`ValueError`, as the checks it replaces raised."""
