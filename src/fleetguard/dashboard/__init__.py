"""The web dashboard: server-rendered pages on the API's origin, sessions and authorization.

``install_dashboard(app)`` adds ``dashboard_router``, the ``/static`` files and the
browser-facing handlers (redirect to /login, HTML 403) to the operator app
(``server.operator_app`` calls it).
"""

from fleetguard.dashboard.app import dashboard_router, install_dashboard

__all__ = ["dashboard_router", "install_dashboard"]
