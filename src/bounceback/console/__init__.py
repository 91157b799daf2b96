"""Terminal displays of recovery, drawn with rich: live progress for every recovery in the process.

>>> import io
>>> from rich.console import Console
>>> from bounceback.console import show_progress
>>> with show_progress(console=Console(file=io.StringIO()), mode="plain"):
...     pass
"""

from bounceback.console._progress import MODES, ProgressDisplay, describe_reason, show_progress
from bounceback.console._prompt import TerminalPrompter, render_ticket
from bounceback.console._text import one_line

__all__ = [
    "MODES",
    "ProgressDisplay",
    "TerminalPrompter",
    "describe_reason",
    "one_line",
    "render_ticket",
    "show_progress",
]
