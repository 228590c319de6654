"""Every use of faust-streaming's private names, and the start-up check that they are all still there.

What the processor (processors/micro_batch.py, processors/membership.py) needs that faust-streaming (pinned)
has no public API for:

* :func:`commit_offsets` calls ``Consumer._commit_offsets``: faust's own
  commit path (it skips partitions no longer assigned), used to commit right
  after a write instead of at faust's next interval.
* :func:`rejoin_group` reaches the aiokafka consumer through
  ``ThreadDelegateConsumer._thread`` and ``AIOKafkaConsumerThread._ensure_consumer``
  and runs the rejoin (eventpipe.compat.aiokafka) on that thread's loop.

:func:`check` verifies all of them on the installed faust.
"""

from __future__ import annotations

import inspect

import faust
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from eventpipe.compat import aiokafka as aiokafka_compat
from eventpipe.compat import require


def problems() -> list[str]:
    """Every internal used here that the installed faust lacks (or has in another shape)."""
    missing = []
    if not inspect.iscoroutinefunction(getattr(Consumer, "_commit_offsets", None)):
        missing.append("Consumer._commit_offsets (a coroutine function)")
    if "self._thread = " not in inspect.getsource(ThreadDelegateConsumer.__init__):  # an instance attribute
        missing.append("ThreadDelegateConsumer._thread")
    missing += [
        f"AIOKafkaConsumerThread.{name}"
        for name in ("_ensure_consumer", "call_thread")
        if not callable(getattr(AIOKafkaConsumerThread, name, None))
    ]
    return missing


def check() -> None:
    """Raise eventpipe.compat.CompatError naming every missing internal; called at start-up."""
    require("faust-streaming", faust.__version__, problems())


async def commit_offsets(consumer: Consumer, offsets: dict) -> bool:
    """Commit ``offsets`` ({TopicPartition: next offset}) through faust's own commit path."""
    return await consumer._commit_offsets(offsets)


async def rejoin_group(consumer: ThreadDelegateConsumer) -> None:
    """Refresh metadata and rejoin the group, on the thread that runs faust's aiokafka consumer."""
    thread = consumer._thread  # faust-streaming's aiokafka consumer runs in its own thread and loop

    async def rejoin() -> None:
        await aiokafka_compat.rejoin_group(thread._ensure_consumer())

    await thread.call_thread(rejoin)
