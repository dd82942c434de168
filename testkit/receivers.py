"""Commune receivers started for a test (or a benchmark) and always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from commune.receiver import Receiver, ReceiverStats
from testkit.mqtt import HasAddress, Message
from testkit.waiting import wait_until


class Receivers:
    """Starts receivers of one commune on one broker and store; ``stop_all()`` (or the end of
    the ``with`` block) stops every one. ``defaults`` are passed to each (``client_id``,
    ``keepalive``...) unless ``start`` says otherwise."""

    def __init__(
        self, broker: HasAddress, commune: str, db_path: Path | str, **defaults: Any
    ) -> None:
        self.broker = broker
        self.commune = commune
        self.db_path = db_path
        self.defaults = defaults
        self.started: list[Receiver] = []

    def start(self, *, subscribed: bool = True, **kwargs: Any) -> Receiver:
        """A started receiver; with ``subscribed`` (the default), once its SUBACK is in."""
        receiver = Receiver(
            self.broker.host,
            self.broker.port,
            self.commune,
            self.db_path,
            **(self.defaults | kwargs),
        )
        self.started.append(receiver)
        receiver.start()
        if subscribed:
            assert receiver.wait_subscribed(10), "receiver did not subscribe"
        return receiver

    def stop_all(self) -> None:
        for receiver in self.started:
            receiver.stop()

    def __enter__(self) -> Receivers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


@contextmanager
def running_receiver(
    broker: HasAddress, commune: str, db_path: Path | str, **kwargs: Any
) -> Iterator[Receiver]:
    """One subscribed receiver for the ``with`` block."""
    with Receivers(broker, commune, db_path) as receivers:
        yield receivers.start(**kwargs)


def receipt_ids(messages: list[Message]) -> list[str]:
    """Every event id in these receipt messages, in order."""
    return [i for m in messages for i in m.json()["ids"]]


def wait_stats(
    receiver: Receiver, predicate: Callable[[ReceiverStats], bool], timeout: float = 10.0
) -> ReceiverStats:
    """The receiver's stats once ``predicate`` holds for them."""
    wait_until(lambda: predicate(receiver.stats), timeout, f"stats; last {receiver.stats}")
    return receiver.stats
