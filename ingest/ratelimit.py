"""Per-write-key rate limits: a token bucket counted in events, off unless configured.

One noisy app must not crowd out the others on a shared collector. Each key
with a limit owns a bucket of ``rate`` events per second that holds at most
one second's worth. A request is let in while the bucket is not empty and
takes its events, which may leave the bucket in debt (a 2,500-event batch is
never refused forever because it is bigger than the bucket); while in debt the
key's requests get 429 with the seconds until the debt is paid. Buckets live
in each collector process, so N collector processes let in up to N × rate.
"""

from __future__ import annotations

import math
import time


class TokenBucket:
    __slots__ = ("rate", "tokens", "stamp")

    def __init__(self, rate: float):
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()

    def take(self, events: int, now: float | None = None) -> int:
        """0 if ``events`` may pass now (and they are taken), else whole seconds to wait."""
        now = time.monotonic() if now is None else now
        tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens <= 0:
            self.tokens = tokens
            return max(1, math.ceil(-tokens / self.rate))
        self.tokens = tokens - events
        return 0
