"""The operator API's fixtures (a real app over a fresh installation), for attack tests."""

from tests.api.conftest import add_operator, app, client, fleet_ca, login_as

__all__ = ["add_operator", "app", "client", "fleet_ca", "login_as"]
