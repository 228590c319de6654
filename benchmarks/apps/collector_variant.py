"""The real collector with one producer option changed, to measure a proposed change before making it.

``EVENTPIPE_BENCH_COMPRESSION=lz4|zstd|gzip`` sets the Kafka producer's ``compression_type``
(ingest/sink.py leaves it unset: records go uncompressed). Everything else is ``eventpipe collector``.
``EVENTPIPE_BENCH_NULL_SINK=1`` answers 200 without writing to Kafka (see below).
Used by ``eventpipe bench collector --servers bare collector collector-zstd collector-nullsink``.
"""

import os
import sys

import aiokafka

COMPRESSION = os.environ.get("EVENTPIPE_BENCH_COMPRESSION")
if COMPRESSION:
    _init = aiokafka.AIOKafkaProducer.__init__

    def _with_compression(self, *args, **kwargs):
        kwargs.setdefault("compression_type", COMPRESSION)
        _init(self, *args, **kwargs)

    aiokafka.AIOKafkaProducer.__init__ = _with_compression  # inherited by granian's forked worker

if os.environ.get("EVENTPIPE_BENCH_NULL_SINK"):
    # Everything of the collector but the Kafka write: submit returns at once (no bundle, no ack,
    # no suspension). Its distance to the bare server is the HTTP-side cost; its distance to the
    # real collector is what bundling + aiokafka + waiting for the ack cost.
    import ingest.sink

    async def _null_submit(self, key, request):
        return None

    ingest.sink.KafkaSink.submit = _null_submit

from eventpipe.cli import main  # noqa: E402

sys.exit(main(["collector"]))
