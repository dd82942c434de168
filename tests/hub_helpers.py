"""Starting the real hub on simulated hardware inside a test."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hw_sim.simulator import SimulatedHub, default_config_path
from settings import Config, parse_config

HUB = "sim-hub"
COMMUNE = "demo"
EVENTS = f"tuquan/v1/{COMMUNE}/{HUB}/event/+"


def sim_config(**sections: dict[str, Any]) -> Config:
    """The default simulated hub's config with some sections' keys replaced."""
    data = tomllib.loads(default_config_path().read_text())
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, base_dir=default_config_path().parent, env={})


@contextmanager
def sim_hub(
    broker: Any, data_dir: Path, cfg: Config | None = None, **sections: dict[str, Any]
) -> Iterator[SimulatedHub]:
    hub = SimulatedHub(cfg or sim_config(**sections), data_dir, broker=(broker.host, broker.port))
    hub.start()
    try:
        yield hub
    finally:
        hub.stop(drain_timeout_s=1.0)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


def outbox_counts(hub: SimulatedHub) -> dict[str, int]:
    return hub.hub.status()["outbox"]
