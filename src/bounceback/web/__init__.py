"""The live web dashboard: breakers, active recoveries, timeline, settings and tickets of one machine.

``bounceback dashboard`` runs it; programs can embed it too::

    from bounceback.web import DashboardServer
    with DashboardServer("/path/to/bounceback.db") as server:
        print(server.url)          # http://127.0.0.1:PORT/?token=...

Pages are rendered on the server from a :class:`~bounceback.web._model.Snapshot` of the home database by
pure view functions, and kept live with server-sent events. See ``docs/dashboard.md``.
"""

from bounceback.web._app import create_app
from bounceback.web._model import (
    AttemptView,
    BreakerView,
    ChoiceView,
    Notice,
    RunView,
    Snapshot,
    TicketView,
)
from bounceback.web._security import AccessPolicy, new_token
from bounceback.web._server import DashboardServer, check_bind, is_loopback

__all__ = [
    "AccessPolicy",
    "AttemptView",
    "BreakerView",
    "ChoiceView",
    "DashboardServer",
    "Notice",
    "RunView",
    "Snapshot",
    "TicketView",
    "check_bind",
    "create_app",
    "is_loopback",
    "new_token",
]
