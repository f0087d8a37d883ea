"""Notifications: destinations (webhooks, syslog) and the outbox of deliveries to make.

Owned by :mod:`fleetguard.notify`; the tables are added by the notification service.
"""

from __future__ import annotations
