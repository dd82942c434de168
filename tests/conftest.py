"""Shared fixtures over the test kit (``testkit/``): a real Mosquitto broker on a free loopback
port, and a commune receiver with a hub's side of the link in front of it.

``mosquitto`` yields a running ``testkit.broker.Broker``; ``mosquitto_factory`` makes more
brokers (a second commune, a bridge, a TLS listener, a persistent one) with extra configuration
lines. Every broker is killed when the test ends, whatever happened.

``start_receiver`` starts receivers for the commune of ``hub_topics``, and ``hub`` publishes as
that hub and hears its receipts; a module names its own hub by overriding ``hub_topics`` (and
``receiver_options``, passed to every receiver it starts).

``pg_url`` is an empty PostgreSQL database of the test's own, on one cluster the session starts
(``pg_server``, skipped with the reason where the server is not installed).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from commune.receiver import Receiver
from core.topics import HubTopics
from testkit.broker import Broker, Brokers, MosquittoMissing
from testkit.hubs import COMMUNE, HUB
from testkit.mqtt import Subscriber
from testkit.postgres import Postgres
from testkit.postgres import missing_reason as postgres_missing_reason
from testkit.receivers import Receivers


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


@pytest.fixture
def hub_topics() -> HubTopics:
    """The hub the receiver tests speak for (the simulated hub, unless a module says)."""
    return HubTopics(COMMUNE, HUB)


@pytest.fixture
def receiver_options() -> dict[str, Any]:
    """Keywords for every receiver ``start_receiver`` starts (a client id...)."""
    return {}


@pytest.fixture
def start_receiver(
    mosquitto: Broker, db_path: Path, hub_topics: HubTopics, receiver_options: dict[str, Any]
) -> Iterator[Callable[..., Receiver]]:
    """Start a subscribed receiver for the commune; every one is stopped at the end."""
    with Receivers(mosquitto, hub_topics.commune, db_path, **receiver_options) as receivers:
        yield receivers.start


@pytest.fixture
def hub(mosquitto: Broker, hub_topics: HubTopics) -> Iterator[Subscriber]:
    """The hub's side of the link: publishes events, hears its receipts."""
    with Subscriber(mosquitto, hub_topics.receipt) as sub:
        yield sub


# -- PostgreSQL: one cluster of the suite's own, a fresh database per test ----------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Postgres]:
    reason = postgres_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.stop("immediate")
        server.remove()


_databases = itertools.count(1)


@pytest.fixture
def pg_url(pg_server: Postgres) -> str:
    """A URL of an empty database of this test's own on the suite's cluster."""
    return pg_server.create_database(f"test_{next(_databases)}")
