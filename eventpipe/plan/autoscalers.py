"""Models of the Kubernetes controllers the plan simulates: the HPA's replica calculation, and pods that start."""

from __future__ import annotations

import collections
import dataclasses
import math

from eventpipe.plan.assumptions import (
    SCALE_DOWN_PERCENT,
    SCALE_DOWN_WINDOW_S,
    SCALE_UP_PERCENT,
    SCALE_UP_PODS,
    SCALE_UP_WINDOW_S,
    TOLERANCE,
)


@dataclasses.dataclass
class HPA:
    """The replica calculation of the Kubernetes HPA controller (autoscaling/v2) for one target.

    Per metric: usage ratio = current / target; within the tolerance nothing changes, else
    ceil(ratio x pods), where pods still starting count as zero usage when scaling up.
    The largest proposal across metrics wins; it is then stabilised (scale up to the minimum
    over the up window, down to the maximum over the down window), limited by the rate
    policies (selectPolicy Max) and clamped to [min, max].
    """

    min_replicas: int
    max_replicas: int
    tolerance: float = TOLERANCE
    up_window_s: int = SCALE_UP_WINDOW_S
    down_window_s: int = SCALE_DOWN_WINDOW_S
    up_percent: int = SCALE_UP_PERCENT
    up_pods: int = SCALE_UP_PODS
    down_percent: int = SCALE_DOWN_PERCENT
    history: collections.deque = dataclasses.field(default_factory=collections.deque)

    def pods_metric(self, current: int, ready: int, usage_total: float, target_per_pod: float) -> int:
        """A Resource (Utilization) or Pods (AverageValue) metric averaged over ready pods."""
        if ready <= 0:
            return current
        ratio = usage_total / ready / target_per_pod
        if abs(ratio - 1) <= self.tolerance:
            return current
        unready = max(0, current - ready)
        if ratio > 1 and unready:
            ratio_all = usage_total / (ready + unready) / target_per_pod
            if ratio_all <= 1 or abs(ratio_all - 1) <= self.tolerance:
                return current
            return math.ceil(ratio_all * (ready + unready))
        return math.ceil(ratio * ready)

    def external_metric(self, current: int, value: float, target_average: float) -> int:
        """An External metric with an AverageValue target (what KEDA's ScaledObject creates)."""
        ratio = value / (target_average * max(current, 1))
        if abs(ratio - 1) <= self.tolerance:
            return current
        return math.ceil(value / target_average)

    def decide(self, now: float, current: int, proposal: int) -> int:
        up = down = proposal
        for when, rec in self.history:
            if when > now - self.up_window_s:
                up = min(up, rec)
            if when > now - self.down_window_s:
                down = max(down, rec)
        self.history.append((now, proposal))
        while self.history and self.history[0][0] <= now - max(self.up_window_s, self.down_window_s):
            self.history.popleft()
        desired = max(current, up) if current < up else current
        desired = min(desired, down)
        if desired > current:
            limit = max(math.ceil(current * (1 + self.up_percent / 100)), current + self.up_pods)
            desired = min(desired, limit)
        elif desired < current:
            desired = max(desired, int(current * (1 - self.down_percent / 100)))
        return max(self.min_replicas, min(self.max_replicas, desired))


class Pods:
    """Replicas of a Deployment: a new pod serves only after its start-up time."""

    def __init__(self, replicas: int, start_s: float):
        self.start_s = start_s
        self.ready_at = [-math.inf] * replicas

    @property
    def replicas(self) -> int:
        return len(self.ready_at)

    def ready(self, now: float) -> int:
        return sum(1 for t in self.ready_at if t <= now)

    def scale(self, now: float, replicas: int) -> None:
        if replicas > self.replicas:
            self.ready_at += [now + self.start_s] * (replicas - self.replicas)
        elif replicas < self.replicas:
            self.ready_at = sorted(self.ready_at)[:replicas]  # newest (least ready) go first
