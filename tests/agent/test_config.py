from __future__ import annotations

from pathlib import Path

import pytest

from fleetguard.agent import DEFAULT_INTERVAL_S, MIN_INTERVAL_S, AgentConfig
from fleetguard.core.errors import ConfigurationError
from fleetguard.protocol import MAX_MESSAGE_BYTES, ContentType


def test_defaults():
    config = AgentConfig(state_dir=Path("/var/lib/fleetguard"))
    assert config.interval_s == DEFAULT_INTERVAL_S == 300
    assert MIN_INTERVAL_S == 1
    assert config.content_type is ContentType.JSON
    assert config.buffer_path == Path("/var/lib/fleetguard/outbox.sqlite3")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval_s": 0.5},
        {"interval_s": float("nan")},
        {"buffer_max_items": 0},
        {"buffer_max_bytes": MAX_MESSAGE_BYTES - 1},
        {"hash_max_files": 0},
        {"hash_max_files": 65},
        {"hash_max_file_bytes": -1},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ConfigurationError):
        AgentConfig(state_dir=Path("/tmp/x"), **kwargs)


def test_one_second_is_allowed_for_tests():
    assert AgentConfig(state_dir=Path("/tmp/x"), interval_s=1).interval_s == 1
