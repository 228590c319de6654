"""Library internals (eventpipe.compat): every private name eventpipe uses is there, and a missing one is loud.

These tests fail in CI the moment an aiokafka or faust-streaming upgrade removes or reshapes an internal
eventpipe relies on, naming it, instead of the collector or processor misbehaving in the rare state the
internal exists for.
"""

from __future__ import annotations

import types

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol import produce
from faust.transport.consumer import Consumer

from eventpipe.compat import CompatError
from eventpipe.compat import aiokafka as aiokafka_compat
from eventpipe.compat import faust as faust_compat
from eventpipe.ingest.kafka_sink import KafkaSink
from eventpipe.ingest.records import RecordBatch
from eventpipe.settings import Settings


def test_every_private_name_eventpipe_uses_is_in_the_installed_libraries():
    assert aiokafka_compat.problems() == []
    assert faust_compat.problems() == []
    aiokafka_compat.check()
    faust_compat.check()


def test_record_batch_has_every_member_aiokafka_calls_on_a_batch_builder():
    missing = [n for n in aiokafka_compat.BATCH_BUILDER_MEMBERS if not callable(getattr(RecordBatch, n, None))]
    assert missing == []


def test_a_missing_aiokafka_internal_stops_the_collector_at_start_naming_it(monkeypatch):
    monkeypatch.delattr(AIOKafkaClient, "_metadata_update")

    class Reshaped:  # a request whose fields changed: the flat encoder would write wrong bytes
        SCHEMA = types.SimpleNamespace(names=("required_acks", "timeout", "topics"))

    monkeypatch.setattr(produce, "ProduceRequest_v5", Reshaped)
    with pytest.raises(CompatError) as exc:
        KafkaSink(Settings()).start()  # the check runs before anything connects
    message = str(exc.value)
    assert message.startswith("aiokafka 0.14.0 lacks internals eventpipe uses: ")
    assert "AIOKafkaClient._metadata_update" in message and "ProduceRequest_v5" in message
    assert "eventpipe/compat/aiokafka.py" in message


def test_a_missing_faust_internal_is_named(monkeypatch):
    monkeypatch.delattr(Consumer, "_commit_offsets")
    with pytest.raises(CompatError, match=r"faust-streaming \S+ lacks .*Consumer\._commit_offsets.*compat/faust\.py"):
        faust_compat.check()
