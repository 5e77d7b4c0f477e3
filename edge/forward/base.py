"""The one interface every upstream transport implements, and its reconnect backoff."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

AckHandler = Callable[[dict[str, Any]], None]
ConfigHandler = Callable[[bytes], None]


class Backoff:
    """Exponential backoff with full jitter: many gateways reconnecting after one outage
    spread out instead of hitting the broker in the same second."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.min_s = min_s
        self.max_s = max(max_s, min_s)
        self.attempt = 0
        self.rng = rng or random.Random()

    def next_delay(self) -> float:
        cap = min(self.max_s, self.min_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self.rng.uniform(self.min_s, cap)

    def reset(self) -> None:
        self.attempt = 0


class Forwarder(ABC):
    """Sends encoded batches upstream and hands the collector's acks to ``on_ack``.

    ``send`` only hands a batch to the transport; nothing is final until an ack arrives, so
    implementations may drop a batch on error: the agent sends it again after its ack timeout.
    Callbacks run on the transport's own thread.
    """

    def __init__(self, on_ack: AckHandler, on_config: ConfigHandler | None = None) -> None:
        self.on_ack = on_ack
        self.on_config = on_config

    @abstractmethod
    def start(self) -> None:
        """Begin connecting in the background."""

    @abstractmethod
    def stop(self) -> None:
        """Say goodbye (status offline where the transport has one) and stop."""

    @property
    @abstractmethod
    def connected(self) -> bool:
        """Whether a send now is likely to reach the collector."""

    @abstractmethod
    def send(self, kind: str, payload: bytes) -> bool:
        """Hand one batch (``kind`` is ``readings`` or ``events``) to the transport."""

    def publish_status(self, payload: bytes) -> None:
        """Publish the agent's status (retained on MQTT); transports without one ignore it."""
        return None
