# Entry point on the board (MicroPython runs main.py at boot): read config.py, build the
# machine objects, run the node loop. Everything that is not hardware lives in node.py.
#
# A bad config or a missing pin stops here with a message, before the watchdog is armed, so
# the board stays at the REPL for `mpremote` instead of resetting in a loop. The watchdog is
# armed only after start_delay_ms: connect with mpremote (it sends Ctrl-C) in that window to
# get a REPL; once armed, a board left at the REPL resets after watchdog_ms.

import time

import config
import machine
from node import Node, check_config


def _input_pin(spec):
    pull = {"up": "PULL_UP", "down": "PULL_DOWN"}.get(spec.get("pull"))
    if pull is None:
        return machine.Pin(spec["pin"], machine.Pin.IN)
    return machine.Pin(spec["pin"], machine.Pin.IN, getattr(machine.Pin, pull))


def _adc(pin):
    adc = machine.ADC(machine.Pin(pin))
    # ESP32: the full 0..3.3 V range instead of the default 0..1 V.
    if hasattr(adc, "atten") and hasattr(machine.ADC, "ATTN_11DB"):
        adc.atten(machine.ADC.ATTN_11DB)
    return adc


def build(cfg):
    """The Node for this board, not yet running, and the watchdog timeout to arm."""
    de = None
    if cfg["rs485"]:
        # Low at once: until then the transceiver may be driving the bus.
        de = machine.Pin(cfg["de_pin"], machine.Pin.OUT, value=0)
    uart = machine.UART(
        cfg["uart_id"],
        baudrate=cfg["baud"],
        tx=machine.Pin(cfg["tx_pin"]),
        rx=machine.Pin(cfg["rx_pin"]),
        timeout=0,
    )
    inputs = {}
    for name in cfg["inputs"]:
        inputs[name] = _input_pin(cfg["inputs"][name])
    adcs = {}
    if cfg["smoke_level_pin"] is not None:
        adcs["smoke_level"] = _adc(cfg["smoke_level_pin"])
    if cfg["battery_pin"] is not None:
        adcs["battery"] = _adc(cfg["battery_pin"])
    return Node(cfg, uart, time, inputs=inputs, adcs=adcs, de=de)


def main():
    try:
        cfg = check_config(config.NODE)
        node = build(cfg)
    except Exception as e:
        print("tuquan node: not started:", e)
        return
    print("tuquan node %d boot %d: starting" % (node.node_id, node.boot))
    time.sleep_ms(cfg["start_delay_ms"])
    if cfg["watchdog_ms"]:
        node.wdt = machine.WDT(timeout=cfg["watchdog_ms"])
    node.run()


main()
