"""The collector's record batches and produce requests are byte for byte what aiokafka writes and reads."""

from __future__ import annotations

import os

import pytest
from aiokafka.protocol import produce
from aiokafka.protocol.types import Schema
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from eventpipe.ingest.records import CODECS, RecordBatch, compressor, encode_produce_request

VALUES = [b"x" * 10, os.urandom(300), b"", b'{"batch":[]}' * 1000]


def _theirs(values, ts, pid=7, epoch=2, seq=40):
    b = DefaultRecordBatchBuilder(2, 0, 0, pid, epoch, seq, 1 << 24)
    for i, v in enumerate(values):
        b.append(i, ts, None, v, [])
    return bytes(b.build())


@pytest.mark.parametrize("values", [VALUES[:1], VALUES, [VALUES[3]]])
def test_uncompressed_batches_are_aiokafkas_bytes(values):
    ours = RecordBatch(values, 1_767_225_600_123)
    ours._set_producer_state(7, 2, 40)
    assert ours._build() == _theirs(values, 1_767_225_600_123)
    assert ours.record_count() == len(values) and ours._build() is ours._build()  # a retry sends the same bytes


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_batches_read_back(codec):
    pytest.importorskip("cramjam")
    values = [b'{"batch":[{"type":"track"}]}' * 200, b"second"]
    ours = RecordBatch(values, 1_767_225_600_000, codec, compressor(codec))
    ours._set_producer_state(1, 0, 5)
    data = ours._build()
    assert len(data) < sum(map(len, values))
    batch = MemoryRecords(data).next_batch()
    assert batch.compression_type == CODECS[codec] and batch.validate_crc()
    assert [r.value for r in batch] == values
    assert (batch.producer_id, batch.base_sequence) == (1, 5)


def test_crc_and_fields_read_back_uncompressed():
    ours = RecordBatch(VALUES, 5)
    data = ours._build()
    batch = DefaultRecordBatch(bytearray(data))
    assert batch.validate_crc() and [r.value for r in batch] == VALUES and batch.compression_type == 0


@pytest.mark.parametrize("version", range(3, 9))
def test_flat_produce_request_encoding_is_aiokafkas(version):
    cls = getattr(produce, f"ProduceRequest_v{version}")
    topics = [("events.raw", [(0, b"abc" * 100), (7, b""), (3, None)]), ("other", [(1, b"z")])]
    for txn in (None, "txn-1"):
        req = cls(txn, -1, 10_000, topics)
        assert encode_produce_request(req) == Schema.encode(cls.SCHEMA, [txn, -1, 10_000, topics])
