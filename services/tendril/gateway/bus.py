"""Topic bus core: every message published on a topic is queued for each current subscriber.

No gRPC here. Each subscriber has its own bounded queue (:mod:`tendril.core.fanout`,
policy DROP_OLDEST): a slow subscriber never blocks a publisher and never holds more than
``queue_size`` messages; what it could not take is dropped oldest-first, counted and logged.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from tendril.core.errors import ErrorKind
from tendril.core.fanout import Fanout, Overflow, Subscription, SubscriptionClosed
from tendril.core.logs import get_logger
from tendril.gateway.errors import GatewayError, GatewayReason

log = get_logger("tendril.gateway.bus")

T = TypeVar("T")

DEFAULT_QUEUE_SIZE = 1024
MAX_TOPIC_LENGTH = 256


def check_topic(topic: str) -> None:
    if not topic:
        raise GatewayError(
            ErrorKind.INVALID_ARGUMENT,
            "topic is empty; name a topic, e.g. 'tendril/worker'",
            reason=GatewayReason.TOPIC_MISSING,
        )
    if len(topic) > MAX_TOPIC_LENGTH:
        raise GatewayError(
            ErrorKind.INVALID_ARGUMENT,
            f"topic is {len(topic)} characters long; use at most {MAX_TOPIC_LENGTH}",
            reason=GatewayReason.TOPIC_TOO_LONG,
        )


class TopicBus(Generic[T]):
    """Topics -> subscribers. Publish is O(subscribers of the topic) and never waits."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._topics: dict[str, Fanout[T]] = {}
        self.published = 0
        self.dropped = 0  # messages dropped from subscriber queues, all topics
        self._seen_drops: dict[Subscription[T], int] = {}  # drops already counted in self.dropped
        self._reported: dict[Subscription[T], int] = {}  # drop count at the last log line

    def subscribe(self, topic: str, subscriber: str = "") -> Subscription[T]:
        check_topic(topic)
        fan = self._topics.setdefault(topic, Fanout())
        sub = fan.subscribe(maxsize=self.queue_size, overflow=Overflow.DROP_OLDEST, name=subscriber)
        self._seen_drops[sub] = 0
        self._reported[sub] = 0
        log.info("bus.subscribed", topic=topic, subscriber=subscriber, subscribers=len(fan))
        return sub

    def unsubscribe(self, topic: str, sub: Subscription[T]) -> None:
        fan = self._topics.get(topic)
        if fan is not None:
            fan.unsubscribe(sub)
            if not len(fan):
                del self._topics[topic]
        self._seen_drops.pop(sub, None)
        self._reported.pop(sub, None)
        log.info(
            "bus.unsubscribed",
            topic=topic,
            subscriber=sub.name,
            delivered=sub.delivered,
            dropped=sub.dropped,
        )

    def subscribers(self, topic: str) -> int:
        fan = self._topics.get(topic)
        return len(fan) if fan is not None else 0

    def publish(self, topic: str, message: T) -> int:
        """Queue ``message`` for every subscriber of ``topic``; returns how many."""
        check_topic(topic)
        self.published += 1
        fan = self._topics.get(topic)
        if fan is None:
            return 0
        delivered = fan.publish(message)
        for sub in fan.subscriptions:
            seen = self._seen_drops.get(sub, 0)
            if sub.dropped != seen:
                self.dropped += sub.dropped - seen
                self._seen_drops[sub] = sub.dropped
                self._report_drops(topic, sub)
        return delivered

    def _report_drops(self, topic: str, sub: Subscription[T]) -> None:
        # NOTE: one log line per subscriber at 1, 10, 100, ... drops, so a stuck subscriber
        # shows up in the log without flooding it.
        last = self._reported.get(sub, 0)
        threshold = 1 if last == 0 else last * 10
        if sub.dropped >= threshold:
            self._reported[sub] = threshold
            log.warning(
                "bus.subscriber_slow",
                topic=topic,
                subscriber=sub.name,
                dropped=sub.dropped,
                queue_size=sub.maxsize,
                hint="the subscriber reads slower than the topic is published; oldest messages are dropped",
            )

    @property
    def topics(self) -> list[str]:
        """Topics with at least one subscriber."""
        return list(self._topics)

    def close(self, error: SubscriptionClosed | None = None) -> None:
        """End every subscription (their streams finish, or raise ``error`` when given)."""
        for fan in self._topics.values():
            fan.close_all(error)
        self._topics.clear()
        self._seen_drops.clear()
        self._reported.clear()
