"""The ``bounceback`` command line: thin click commands over the library.

Each command module attaches its commands to the root group in ``_app`` when imported; to add one,
import it below (one line) and keep the list sorted.
"""

from bounceback.cli import (
    _dashboard,  # noqa: F401  (registers `bounceback dashboard`)
    _demo,  # noqa: F401  (registers `bounceback demo`)
    _run,  # noqa: F401  (registers `bounceback run`)
    _settings,  # noqa: F401  (registers `bounceback settings`)
    _simulate,  # noqa: F401  (registers `bounceback simulate`)
    _status,  # noqa: F401  (registers `bounceback status`, `timeline`, `breaker`, `cancel`)
    _tickets,  # noqa: F401  (registers `bounceback tickets`)
)
from bounceback.cli._app import cli, main

__all__ = ["cli", "main"]
