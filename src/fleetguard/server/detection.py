"""Detection in the running server: the service started with it, fed by ingestion, stopped
after it (every report ingestion stored is through detection before the process ends).

Settings (environment, read once at start):

- ``FLEETGUARD_DETECTION_LEARNING_WINDOW_S``: first-seen rules are quiet this long after a
  device's registration or first report, whichever is later (default 3600);
- ``FLEETGUARD_DETECTION_LEARNED``: ``1`` adds the learned detectors (baselines, peers,
  Half-Space Trees) after the rule sets; default ``0``: on the evaluation's benign
  device-days they raise 0.033 false alarms per device-day (firmware installs), the rules
  none, against a target under 0.01 (docs/evaluation.md, docs/alarms.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from fleetguard.core.errors import ConfigurationError
from fleetguard.detect.learned import learned_detectors
from fleetguard.detect.pipeline import Detector
from fleetguard.detect.service import AlarmListener, DetectionConfig, DetectionService
from fleetguard.store import Database

log = logging.getLogger("fleetguard.server")
LEARNING_WINDOW_ENV = "FLEETGUARD_DETECTION_LEARNING_WINDOW_S"
LEARNED_ENV = "FLEETGUARD_DETECTION_LEARNED"


def detection_config_from_env(environ: dict[str, str] | None = None) -> DetectionConfig:
    env = os.environ if environ is None else environ
    raw = env.get(LEARNING_WINDOW_ENV, "").strip()
    if not raw:
        return DetectionConfig()
    try:
        window = float(raw)
    except ValueError:
        window = -1.0
    if not 0 <= window <= 30 * 86_400:
        raise ConfigurationError(f"{LEARNING_WINDOW_ENV} is seconds from 0 to 30 days, "
                                 f"not {raw[:32]!r}")
    return DetectionConfig(learning_window_s=window)


def _detectors(environ: dict[str, str] | None = None) -> list[Detector]:
    env = os.environ if environ is None else environ
    if env.get(LEARNED_ENV, "0").strip() != "1":
        return []
    return list(learned_detectors())


def start_detection(
    db: Database, config: DetectionConfig | None = None, *,
    on_alarm: Sequence[AlarmListener] = (),
) -> DetectionService:
    """The detection service over ``db``, running (stop it with ``stop()``); each of
    ``on_alarm`` hears every alarm opened, updated or resolved (notifications)."""
    service = DetectionService(db, config=config or detection_config_from_env(),
                               detectors=_detectors())
    for listener in on_alarm:
        service.add_listener(listener)
    service.start()
    log.info("detection running: learning window %.0f s, %d learned detector(s)",
             service.config.learning_window_s, len(service.detectors))
    return service


__all__ = ["LEARNED_ENV", "LEARNING_WINDOW_ENV", "detection_config_from_env", "start_detection"]
