"""Configuration: one object, read from EVENTPIPE_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventpipe.settings import Settings


def test_env_overrides_and_types():
    s = Settings.from_env(
        {
            "EVENTPIPE_COLLECTOR_PORT": "9999",
            "EVENTPIPE_BUNDLE_WINDOW_MS": "2.5",
            "EVENTPIPE_DATA_DIR": "/tmp/x",
            "EVENTPIPE_KAFKA_BOOTSTRAP": "h:19092",
        }
    )
    assert (s.collector_port, s.bundle_window_ms, s.data_dir, s.broker_port) == (9999, 2.5, Path("/tmp/x"), 19092)
    assert s.store_dir == Path("/tmp/x/store")
    assert Settings.from_env(s.env()) == s  # children see exactly the parent's settings


def test_bad_values_name_the_variable():
    with pytest.raises(ValueError, match="EVENTPIPE_COLLECTOR_PORT"):
        Settings.from_env({"EVENTPIPE_COLLECTOR_PORT": "eighty"})
