"""Watching this processor's place in the consumer group: lag per partition, and a rejoin when it has none.

A processor that joins while the broker is still loading its metadata (e.g. right after a
broker restart) is assigned nothing ("Ignoring missing topic") and, since nobody else joins
or leaves, would idle forever. Replicas are capped at the partition count (deploy/k8s), so
an empty assignment is never the intended state.
"""

from __future__ import annotations

import logging
import time

from eventpipe.compat import faust as faust_compat
from eventpipe.processors import metrics

log = logging.getLogger("eventpipe.processor")


class Membership:
    def __init__(self, session_timeout: float, clock=time.monotonic):
        self.rejoin_after = 3 * session_timeout
        self.clock = clock
        self.empty_since: float | None = None

    async def check(self, consumer) -> None:
        """Every few seconds: rejoin if assigned nothing for a while, then report the lag of each partition."""
        await self._rejoin_if_assigned_nothing(consumer)
        for tp in consumer.assignment():
            position, highwater = await consumer.position(tp), consumer.highwater(tp)
            if position is not None and highwater is not None:  # both unknown while the broker is away
                metrics.LAG.labels(str(tp.partition)).set(max(0, highwater - position))

    async def _rejoin_if_assigned_nothing(self, consumer) -> None:
        """A rejoin alone assigns nothing again: the client keeps metadata without the topic until
        ``metadata.max.age`` (5 minutes), so the metadata is refreshed first
        (tests/test_processor_faults.py reproduces it by creating the topic late)."""
        if consumer.assignment():
            self.empty_since = None
            return
        now = self.clock()
        if self.empty_since is None:
            self.empty_since = now
        elif now - self.empty_since > self.rejoin_after:
            log.warning("no partitions assigned for %.0fs: rejoining the consumer group", now - self.empty_since)
            self.empty_since = now
            await faust_compat.rejoin_group(consumer)
