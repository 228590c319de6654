"""The Kafka record format of events.raw: a bundle of accepted HTTP requests.

Per-record cost dominates both Python ends (aiokafka and faust handle every record as Python
objects and callbacks; benchmarks/README.md), so the collector
puts many accepted requests into one record. A bundle keeps each request's
body exactly as the client sent it (decompressed), plus what only the
collector knows: project, receive time, client address, user agent. It is
MessagePack, versioned by its first field so the format can evolve.
"""

from __future__ import annotations

import msgspec

VERSION = 1


class AcceptedRequest(msgspec.Struct, array_like=True, frozen=True):
    project: str
    received_at_ms: int
    ip: str
    user_agent: str
    body: bytes  # the request's JSON body, as sent
    # a hot key's request spread over partitions (ingest/overflow.py); its events are flagged hot_key_overflow.
    # Trailing with a default: bundles without it decode as before, and older readers ignore it.
    overflow: bool = False


class Bundle(msgspec.Struct, array_like=True):
    version: int
    requests: list[AcceptedRequest]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Bundle)


def encode_bundle(requests: list[AcceptedRequest]) -> bytes:
    return _encoder.encode(Bundle(VERSION, requests))


def decode_bundle(data: bytes) -> list[AcceptedRequest]:
    bundle = _decoder.decode(data)
    if bundle.version != VERSION:
        raise ValueError(f"unsupported bundle version {bundle.version}")
    return bundle.requests


def encoded_size(request: AcceptedRequest) -> int:
    """Upper bound of the bytes a request adds to a bundle (msgpack framing is < 32 bytes)."""
    return len(request.body) + len(request.project) + len(request.ip) + len(request.user_agent) + 32
