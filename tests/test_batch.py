"""The collector's cheap, immediate judgements of a request, without a server."""

from __future__ import annotations

import base64
import gzip

import pytest

from eventpipe.ingest.batch import Rejected, decompress, parse_batch, write_key_from_basic


def test_write_key_from_basic():
    assert write_key_from_basic("Basic " + base64.b64encode(b"abc:").decode()) == "abc"
    assert write_key_from_basic("basic " + base64.b64encode(b"abc:secret").decode()) == "abc"
    assert write_key_from_basic("Bearer abc") is None
    assert write_key_from_basic("Basic !!!") is None
    assert write_key_from_basic(None) is None


def test_partition_key_is_first_events_anonymous_or_user_id():
    assert parse_batch(b'{"batch":[{"type":"identify","userId":"u1"}]}', 1000).partition_key == b"u1"
    parsed = parse_batch(
        b'{"batch":[{"type":"track","event":"e","anonymousId":"a","userId":"u"},{"type":"page","userId":"z"}]}', 1000
    )
    assert (parsed.partition_key, parsed.events) == (b"a", 2)


def test_decompress_bounds_output():
    data = b"x" * 5000
    assert decompress(gzip.compress(data), "gzip", 5000) == data
    with pytest.raises(Rejected) as exc:
        decompress(gzip.compress(data), "gzip", 4999)
    assert exc.value.status == 413
    with pytest.raises(Rejected) as exc:
        decompress(b"not gzip", "gzip", 100)
    assert (exc.value.status, exc.value.code) == (400, "bad_gzip")
    with pytest.raises(Rejected) as exc:
        decompress(b"", "br", 100)
    assert exc.value.status == 415
