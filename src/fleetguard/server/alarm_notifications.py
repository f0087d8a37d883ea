"""Alarms as notifications: each alarm opened or resolved is published to the notifier
(signed webhooks, syslog), from detection's listener thread, never blocking it.

An alarm that goes on firing is updated on every report; those updates stay in the alarm
queue and the API, not in a SOC's inbox: a receiver hears of an alarm once when it opens
and once when it ends.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

from fleetguard.detect.service import AlarmChange, DetectionService
from fleetguard.notify import NotificationEvent, Notifier

PUBLISHED_CHANGES = frozenset({"opened", "resolved"})


def _moment(change: AlarmChange) -> datetime:
    alarm = change.alarm
    if change.change == "opened":
        return alarm.opened_at
    if change.change == "resolved" and alarm.resolved_at is not None:
        return alarm.resolved_at
    return alarm.last_seen_at


def alarm_event(change: AlarmChange) -> NotificationEvent:
    """The event of an alarm change; its id is stable (the same change published twice is
    delivered once)."""
    alarm = change.alarm
    at = _moment(change)
    extensions = {
        "cs2Label": "confidence", "cs2": alarm.confidence.value,
        "cs3Label": "family", "cs3": alarm.family.value,
        "cs4Label": "features", "cs4": ",".join(alarm.features)[:1023],
        "cnt": str(alarm.report_count),
    }  # fmt: skip
    if alarm.observed is not None:
        extensions.update(cfp1Label="observed", cfp1=f"{alarm.observed:g}")
    body = json.loads(json.dumps(dataclasses.asdict(alarm), default=str))
    return NotificationEvent(
        id=f"alarm:{alarm.id}:{change.change}:{int(at.timestamp() * 1000)}",
        kind=f"alarm.{change.change}", severity=alarm.severity,
        title=(alarm.summary or alarm.rule_id)[:200], signature_id=alarm.rule_id[:100],
        name=(alarm.description or alarm.summary or alarm.rule_id)[:200], occurred_at=at,
        device_id=alarm.device_id, body=body, extensions=extensions,
    )  # fmt: skip


def notify_alarms(detection: DetectionService, notifier: Notifier) -> None:
    """Publish every alarm detection opens or resolves (after its commit)."""

    def publish(change: AlarmChange) -> None:
        if change.change in PUBLISHED_CHANGES:
            # A full queue is counted and logged by the notifier; the alarm stays in its table.
            notifier.publish(alarm_event(change))

    detection.add_listener(publish)
