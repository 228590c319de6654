"""The processor's logging: a normal start reads as a few lines, and errors mean something is wrong.

Left to their defaults, faust logs every service it starts and stops (some sixty
"Starting..." lines a start) and aiokafka every step of a group join; on a
fresh broker it also logs ``GroupCoordinatorNotAvailableError`` errors and
"Marking the coordinator dead" warnings, which are expected there: the broker
creates ``__consumer_offsets`` on the first join, and the client retries until
it has. So an operator reading ``eventpipe up`` saw errors on every first start.

Here faust, mode and aiokafka log warnings and errors only, except faust's
"Ready" line; this process's own loggers (``eventpipe.*``) log at INFO, and each
partition assignment is one line of its own (it replaces aiokafka's join steps).
The two expected coordinator messages are held back until the first assignment,
for at most ``JOIN_GRACE_SECONDS`` after start, and counted in that assignment's
line; after the grace (a broker that stays away, or a later coordinator move) they
are logged as aiokafka writes them, like every other warning and error.

A broker that goes away is a real error, and aiokafka says so, but ten times a
second per connection while it retries: some sixty lines a second that bury
everything else. Each of its messages is logged the first time, then at most once
per ``REPEAT_SECONDS`` with the count of those left out in between.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("eventpipe.processor")

JOIN_GRACE_SECONDS = 30.0
REPEAT_SECONDS = 10.0
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as the collector's (eventpipe/cli.py)
# the two messages aiokafka logs while a fresh broker sets up the group coordinator
EXPECTED_WHILE_JOINING = ("Group Coordinator Request failed: %s", "Marking the coordinator dead (node %s)for group %s.")


class FirstJoin(logging.Filter):
    """Holds back the expected coordinator messages until the first assignment (or the grace is over)."""

    def __init__(self, grace_seconds: float = JOIN_GRACE_SECONDS, clock=time.monotonic):
        super().__init__()
        self.clock = clock
        self.until = clock() + grace_seconds
        self.joined = False
        self.held_back = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.joined or self.clock() >= self.until or record.msg not in EXPECTED_WHILE_JOINING:
            return True
        if record.msg == EXPECTED_WHILE_JOINING[0] and not getattr(record.args[0], "retriable", False):
            return True  # e.g. not authorized: no retry follows, so it is never expected
        self.held_back += 1
        return False


class Repeats(logging.Filter):
    """aiokafka's messages: each the first time, then one per ``every`` seconds saying how many were left out."""

    def __init__(self, every: float = REPEAT_SECONDS, clock=time.monotonic):
        super().__init__()
        self.every = every
        self.clock = clock
        self.seen: dict[tuple[str, str], list] = {}  # (logger, message template) -> [last logged at, left out since]

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka"):
            return True
        key, now = (record.name, str(record.msg)), self.clock()
        entry = self.seen.get(key)
        if entry is not None and now - entry[0] < self.every:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:
            record.msg = f"{record.msg} [and {entry[1]} more like this in the last {now - entry[0]:.0f} s]"
        if len(self.seen) > 1000:  # messages that embed changing values: keep the memory bounded
            self.seen.clear()
        self.seen[key] = [now, 0]
        return True


class ReadyLine(logging.Filter):
    """faust's worker at warning level, but for its one "Ready" line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.getMessage().endswith(": Ready")


def config(first_join: FirstJoin) -> dict:
    """The ``logging.config.dictConfig`` that the faust worker applies at start."""
    return {
        "version": 1,
        "disable_existing_loggers": False,  # eventpipe.* loggers exist before the worker configures logging
        "filters": {
            "first_join": {"()": lambda: first_join},
            "ready_line": {"()": ReadyLine},
            "repeats": {"()": Repeats},
        },
        "formatters": {"plain": {"format": FORMAT}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "plain",
                "filters": ["repeats"],
            }
        },
        "root": {"level": "INFO", "handlers": ["stdout"]},
        "loggers": {
            "faust": {"level": "WARNING"},
            "mode": {"level": "WARNING"},
            "aiokafka": {"level": "WARNING"},
            "faust.worker": {"level": "INFO", "filters": ["ready_line"]},
            "aiokafka.consumer.group_coordinator": {"filters": ["first_join"]},
        },
    }


def partition_ranges(partitions) -> str:
    """``{0, 1, 2, 5, 7, 8}`` as ``0-2, 5, 7-8``."""
    out: list[str] = []
    for p in sorted(partitions):
        if out and int(out[-1].rsplit("-", 1)[-1]) == p - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{p}"
        else:
            out.append(str(p))
    return ", ".join(out)


def assigned_line(assigned, first_join: FirstJoin) -> str:
    """What the processor logs at each assignment (and, at the first, what it held back)."""
    by_topic: dict[str, set[int]] = {}
    for tp in assigned:
        by_topic.setdefault(tp.topic, set()).add(tp.partition)
    parts = [f"{topic} partitions {partition_ranges(ps)}" for topic, ps in sorted(by_topic.items())]
    text = "assigned " + "; ".join(parts) if parts else "assigned no partitions"
    if not first_join.joined and first_join.held_back:
        text += (
            f" (first join: {first_join.held_back} expected coordinator errors held back while the broker "
            "created __consumer_offsets)"
        )
    return text


def install(app) -> dict:
    """Log each assignment of ``app``; returns the logging config for ``faust.Worker(logging_config=...)``."""
    first_join = FirstJoin()

    @app.on_partitions_assigned.connect
    async def log_assignment(sender, assigned, **kwargs) -> None:
        log.info("%s", assigned_line(assigned, first_join))
        first_join.joined = True

    return config(first_join)
