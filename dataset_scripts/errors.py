"""The one error type that means "the user asked for something we cannot do", for every ``geomeld`` command.

Library code raises :class:`UsageError` with a message that says what was expected, what was found and what
to do next; ``geomeld``'s entry point (``modeling_geomeld.cli.main``) prints it as one line and exits with
status 2, never a traceback. This module imports nothing, so a builder worker can raise it without loading
torch.
"""

from __future__ import annotations


class UsageError(Exception):
    """A user mistake (missing path, unknown option, missing data root...): one line, exit code 2."""

    exit_code = 2
