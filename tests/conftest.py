"""Shared fixtures over the test kit (``testkit/``): a real Mosquitto broker on a free loopback
port, and the path of a commune receiver's store.

``mosquitto`` yields a running ``testkit.broker.Broker``; ``mosquitto_factory`` makes more
brokers (a second commune, a bridge, a TLS listener, a persistent one) with extra configuration
lines. Every broker is killed when the test ends, whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testkit.broker import Broker, Brokers, MosquittoMissing


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Start brokers on demand: ``mosquitto_factory(extra_config="...")`` -> running Broker
    (the keywords of ``Brokers.start``: ``name``, ``allow_anonymous``, ``persistent``)."""
    try:
        brokers = Brokers(tmp_path)
    except MosquittoMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield brokers.start
    finally:
        brokers.close()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Broker]) -> Broker:
    """A running Mosquitto on 127.0.0.1 and a free port, anonymous access, no persistence."""
    return mosquitto_factory(name="mosquitto")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a commune receiver keeps its events in this test."""
    return tmp_path / "commune.sqlite3"
