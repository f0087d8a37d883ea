from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetguard.keys import MasterKey
from fleetguard.notify import Notifier, NotifierSettings, RetryPolicy
from fleetguard.store import Database
from tests.agent.pki import TestCA
from tests.notify.receivers import HttpsReceiver

#: Short waits, so retries happen within a test (the product's are seconds to minutes).
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.3, max_delay_s=2.0, lease_s=10.0)


@pytest.fixture(scope="module")
def receiver_ca() -> TestCA:
    return TestCA.create("notify test root")


@pytest.fixture
def receiver(receiver_ca: TestCA, tmp_path: Path) -> Iterator[HttpsReceiver]:
    server = HttpsReceiver(receiver_ca, tmp_path / "receiver")
    yield server
    server.close()


@pytest.fixture
def make_notifier(
    db: Database, master_key: MasterKey
) -> Iterator[Callable[..., Notifier]]:
    """Notifiers over the test's database, each stopped at the end of the test."""
    made: list[Notifier] = []

    def make(retry: RetryPolicy = FAST_RETRY, **settings: object) -> Notifier:
        notifier = Notifier(db, master_key, NotifierSettings(
            retry=retry, poll_s=0.1, timeout_s=3.0, **settings))  # type: ignore[arg-type]
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        notifier.stop()
