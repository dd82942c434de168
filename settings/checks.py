"""Checks across tables: what no single table can see.

Unique names across inputs, outputs, nodes, Modbus detectors and cameras; unique GPIO pins;
rules and the status LED naming an existing output; nodes on an existing bus with an id unique
on it; serial ports not shared between a bus and anything else, and one line setting for every
Modbus detector on a port.

They work on raw TOML tables as well as on built models, and skip values of the wrong type
(those are reported by the type checks), so ``parse_config`` runs them on a file with other
errors and reports everything at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from settings.base import field_of
from settings.buses import LINE_SETTINGS, ModbusConfig


def cross_table_errors(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Unique names across inputs, outputs, nodes, Modbus detectors and cameras; unique pins; rules
    naming an existing output; nodes on an existing bus with an id unique on it; serial ports
    not shared between a bus and anything else.

    Works on raw TOML tables as well as on built models, and skips values of the wrong type
    (those are reported by the type checks), so it can run on a config with other errors.
    """
    errors: list[tuple[str, str]] = []
    name_users: dict[str, str] = {}
    pin_users: dict[int, str] = {}
    kinds_of_name: dict[str, str] = {}
    for section in ("inputs", "outputs", "nodes", "modbus", "cameras"):
        for index, item in _entries(data, section):
            where = f"{section}[{index}]"
            name, pin = field_of(item, "name"), field_of(item, "pin")
            if isinstance(name, str):
                if name in name_users:
                    errors.append(
                        (f"{where}.name", f"name {name!r} is already used by {name_users[name]}")
                    )
                else:
                    name_users[name] = where
                    kinds_of_name[name] = section
            if (
                section in ("inputs", "outputs")
                and isinstance(pin, int)
                and not isinstance(pin, bool)
            ):
                if pin in pin_users:
                    errors.append(
                        (f"{where}.pin", f"GPIO {pin} is already used by {pin_users[pin]}")
                    )
                else:
                    pin_users[pin] = where
    outputs = sorted(name for name, section in kinds_of_name.items() if section == "outputs")
    for index, rule in _entries(data, "rules"):
        output = field_of(rule, "output")
        if not isinstance(output, str) or output in outputs:
            continue
        if output in kinds_of_name:
            msg = f"{output!r} is {_WHAT_SECTION_HOLDS[kinds_of_name[output]]}, not an output"
        elif outputs:
            msg = f"no output named {output!r} (outputs: {', '.join(outputs)})"
        else:
            msg = f"no output named {output!r}: there are no [[outputs]]"
        errors.append((f"rules[{index}].output", msg))
    errors.extend(_status_led_errors(data, outputs))
    errors.extend(_serial_errors(data))
    return errors


def _status_led_errors(data: Mapping[str, Any], outputs: Sequence[str]) -> list[tuple[str, str]]:
    """``uplink.status_led`` names an output that no alarm rule drives."""
    uplink = data.get("uplink")
    led = field_of(uplink, "status_led") if isinstance(uplink, Mapping | BaseModel) else None
    if not isinstance(led, str):
        return []
    if led not in outputs:
        known = f" (outputs: {', '.join(outputs)})" if outputs else ": there are no [[outputs]]"
        return [("uplink.status_led", f"no output named {led!r}{known}")]
    if "rules" in data:
        driven = {field_of(rule, "output"): f"rules[{i}]" for i, rule in _entries(data, "rules")}
    else:  # no rules key: one rule per siren (settings.config.Config)
        driven = {
            field_of(out, "name"): "the default siren rule"
            for _, out in _entries(data, "outputs")
            if field_of(out, "kind") == "siren"
        }
    if led in driven:
        return [
            (
                "uplink.status_led",
                f"{led!r} is driven by {driven[led]}: the status LED needs an output of its own",
            )
        ]
    return []


_WHAT_SECTION_HOLDS = {
    "inputs": "an input",
    "nodes": "a sensor node",
    "modbus": "a Modbus detector",
    "cameras": "a camera",
}


def _entries(data: Mapping[str, Any], section: str) -> list[tuple[int, Any]]:
    """``(index, table)`` of an array of tables; nothing if it is not an array."""
    items = data.get(section)
    if not isinstance(items, Sequence) or isinstance(items, str):
        return []
    return list(enumerate(items))


def _serial_errors(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    buses: dict[str, str] = {}
    for index, bus in _entries(data, "buses"):
        name = field_of(bus, "name")
        if isinstance(name, str):
            if name in buses:
                errors.append(
                    (f"buses[{index}].name", f"name {name!r} is already used by {buses[name]}")
                )
            else:
                buses[name] = f"buses[{index}]"
    node_ids: dict[tuple[str, int], str] = {}
    for index, node in _entries(data, "nodes"):
        bus, node_id = field_of(node, "bus"), field_of(node, "id")
        if not isinstance(bus, str):
            continue
        if bus not in buses:
            known = ", ".join(sorted(buses))
            msg = (
                f"no bus named {bus!r} (buses: {known})"
                if known
                else f"no bus named {bus!r}: there are no [[buses]]"
            )
            errors.append((f"nodes[{index}].bus", msg))
        elif isinstance(node_id, int) and not isinstance(node_id, bool):
            if (bus, node_id) in node_ids:
                errors.append(
                    (
                        f"nodes[{index}].id",
                        f"id {node_id} is already used on bus {bus!r} by {node_ids[bus, node_id]}",
                    )
                )
            else:
                node_ids[bus, node_id] = f"nodes[{index}]"
    port_users: dict[str, str] = {}
    for index, bus in _entries(data, "buses"):
        port = field_of(bus, "port")
        if isinstance(port, str):
            if port in port_users:
                errors.append(
                    (f"buses[{index}].port", f"port {port!r} is already used by {port_users[port]}")
                )
            else:
                port_users[port] = f"buses[{index}]"
    first_on_line: dict[str, tuple[str, Any]] = {}
    for index, entry in _entries(data, "modbus"):
        where, port = f"modbus[{index}]", field_of(entry, "port")
        if not isinstance(port, str):
            continue
        if port in port_users:
            errors.append(
                (
                    f"{where}.port",
                    f"port {port!r} is already used by {port_users[port]}, a sensor bus: "
                    "a Modbus line needs a port of its own",
                )
            )
            continue
        if port not in first_on_line:
            first_on_line[port] = (where, entry)
            continue
        # Several detectors on one RS-485 line: one speed and framing for all of them.
        first_where, first = first_on_line[port]
        for key in LINE_SETTINGS:
            mine, theirs = _line_setting(entry, key), _line_setting(first, key)
            if mine is not None and theirs is not None and mine != theirs:
                errors.append(
                    (
                        f"{where}.{key}",
                        f"{mine!r} differs from {first_where}.{key} ({theirs!r}) on the same "
                        f"port {port!r}: every detector on one line uses the same settings",
                    )
                )
    return errors


def _line_setting(entry: Any, key: str) -> Any:
    """A Modbus line setting, its default when absent, None when of the wrong type."""
    value = field_of(entry, key)
    if value is None:
        return ModbusConfig.model_fields[key].default
    wanted = str if key == "parity" else int
    if isinstance(value, bool) or not isinstance(value, wanted):
        return None
    return value
