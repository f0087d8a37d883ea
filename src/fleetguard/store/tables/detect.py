"""Detection: alarms, rule sets (versioned), and each device's detector state.

Owned by :mod:`fleetguard.detect`; the tables are added by the detection service.
"""

from __future__ import annotations
