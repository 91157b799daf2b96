"""The ``bounceback`` command line: thin click commands over the library.

Each command module attaches its commands to the root group in ``_app`` when imported; to add one,
import it in :func:`_commands` (one line) and keep the list sorted.

Nothing is imported here at first: the library installs without the ``cli`` extra, and ``bounceback``
without it must say in one line which extra to install, not show a traceback. :func:`main` checks the
extra, then loads the commands; ``from bounceback.cli import cli`` loads them too.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["cli", "main"]

# The modules of each extra the command line may need, in the order they are checked.
EXTRAS: dict[str, str] = {
    "click": "cli",
    "rich": "cli",
    "starlette": "web",
    "uvicorn": "web",
    "httpx": "demo",
    "matplotlib": "plot",
    "redis": "redis",
    "prometheus_client": "prometheus",
    "opentelemetry": "otel",
}
"""Top-level module -> the extra that installs it (``pip install 'bounceback[EXTRA]'``)."""


def missing_extra(module: str, needed_by: str = "the bounceback command line") -> str:
    """The one line that says which extra to install for a missing ``module``.

    >>> missing_extra("click")
    "bounceback: the bounceback command line needs the cli extra: pip install 'bounceback[cli]'"
    """
    extra = EXTRAS.get(module.partition(".")[0], "all")
    return f"bounceback: {needed_by} needs the {extra} extra: pip install 'bounceback[{extra}]'"


def _commands() -> Any:
    from bounceback.cli import (
        _dashboard,  # noqa: F401  (registers `bounceback dashboard`)
        _demo,  # noqa: F401  (registers `bounceback demo`)
        _run,  # noqa: F401  (registers `bounceback run`)
        _settings,  # noqa: F401  (registers `bounceback settings`)
        _simulate,  # noqa: F401  (registers `bounceback simulate`)
        _status,  # noqa: F401  (registers `bounceback status`, `timeline`, `breaker`, `cancel`)
        _tickets,  # noqa: F401  (registers `bounceback tickets`)
    )
    from bounceback.cli._app import cli

    return cli


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``bounceback`` command line (the console script entry point)."""
    for module in ("click", "rich"):
        if importlib.util.find_spec(module) is None:
            print(missing_extra(module), file=sys.stderr)
            sys.exit(2)
    _commands()
    from bounceback.cli._app import main as run_main

    run_main(argv)


def __getattr__(name: str) -> Any:
    if name == "cli":
        return _commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
