"""The real hub on simulated hardware, and the configs to start it with.

The configs are the default simulated hub's (``hw_sim/default_hub.toml``) with some tables
changed: ``camera=False`` leaves the camera out (and its detection and snapshot tables),
``sensor_bus=False`` the serial bus and its nodes; quicker to start, and no CPU spent on frames
in tests and benchmarks that are about something else. Any other table is given by name: a
dict updates the table's keys (``uplink={"receipts": False}``), a list replaces an array of
tables (``buses=[...]``, ``modbus=[...]``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hw_sim.simulator import SimulatedHub, default_config_path
from settings import Config, parse_config
from testkit.mqtt import HasAddress

# Who the default simulated hub is.
HUB = "sim-hub"
COMMUNE = "demo"
EVENTS = f"tuquan/v1/{COMMUNE}/{HUB}/event/+"

CAMERA_TABLES = ("cameras", "detection", "snapshots")  # the camera and what only it uses
SENSOR_BUS_TABLES = ("buses", "nodes")


def sim_config_data(
    *, camera: bool = True, sensor_bus: bool = True, **tables: Mapping[str, Any] | list[Any]
) -> dict[str, Any]:
    """The default simulated hub's config as parsed TOML, with tables left out or changed."""
    data = tomllib.loads(default_config_path().read_text())
    left_out = (() if camera else CAMERA_TABLES) + (() if sensor_bus else SENSOR_BUS_TABLES)
    for name in left_out:
        data.pop(name, None)
    for name, value in tables.items():
        if isinstance(value, list):
            data[name] = value
        else:
            data.setdefault(name, {}).update(value)
    return data


def parse_sim_config(
    data: dict[str, Any], *, base_dir: Path | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Parse config data as the default simulated hub's file would be: relative paths from its
    folder (or ``base_dir``), no environment (or ``env``)."""
    return parse_config(data, base_dir=base_dir or default_config_path().parent, env=env or {})


def sim_config(
    *, camera: bool = True, sensor_bus: bool = True, **tables: Mapping[str, Any] | list[Any]
) -> Config:
    """The default simulated hub's config with tables left out or changed (see the module)."""
    return parse_sim_config(sim_config_data(camera=camera, sensor_bus=sensor_bus, **tables))


@contextmanager
def sim_hub(
    broker: HasAddress,
    data_dir: Path,
    cfg: Config | None = None,
    *,
    node_firmware: Mapping[str, Any] | None = None,
    camera: bool = True,
    sensor_bus: bool = True,
    **tables: Mapping[str, Any] | list[Any],
) -> Iterator[SimulatedHub]:
    """The simulated hub, started against ``broker`` for the block and stopped after it
    (``cfg``, or the default config changed as ``sim_config`` changes it)."""
    hub = SimulatedHub(
        cfg or sim_config(camera=camera, sensor_bus=sensor_bus, **tables),
        data_dir,
        broker=(broker.host, broker.port),
        node_firmware=node_firmware,
    )
    hub.start()
    try:
        yield hub
    finally:
        hub.stop(drain_timeout_s=1.0)


def outbox_counts(hub: SimulatedHub) -> dict[str, int]:
    """The outbox's rows by state (read on the store thread, through the hub's status)."""
    return hub.hub.status()["outbox"]


def press_and_release(hub: SimulatedHub, name: str = "panic-1") -> None:
    """A short press (well under panic-1's 3 s hold, so no duress report)."""
    hub.board.press(name)
    hub.board.release(name)
