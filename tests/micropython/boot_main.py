"""Boot firmware_py/main.py under MicroPython as a board would, against the `machine` stub.

run.mjs boot_main.py [CONFIG_JSON]: with no argument, the example firmware_py/config.py (its
start delay set to 0 and the smoke input held in alarm); with one, that config instead. The
node loop runs until the stub watchdog has been fed machine.WDT_LIMIT times. Prints one JSON
line: what main printed first, then the UART bytes, the DE level at each write, watchdog feeds.
"""

import json
import os
import sys

import machine

sys.path.insert(0, "/cfg")
if "cfg" not in os.listdir("/"):
    os.mkdir("/cfg")

if len(sys.argv) > 1:
    node_config = json.loads(sys.argv[1])
else:
    example = {}
    with open("/fw/config.py") as f:
        exec(f.read(), example)
    node_config = example["NODE"]
    node_config["start_delay_ms"] = 0
    smoke = node_config["inputs"]["smoke"]
    machine.LEVELS[smoke["pin"]] = smoke["active"]  # in alarm from the start
    tamper = node_config["inputs"]["tamper"]
    machine.LEVELS[tamper["pin"]] = 1 - tamper["active"]  # case closed
with open("/cfg/config.py", "w") as f:
    f.write("NODE = " + repr(node_config) + "\n")

machine.WDT_LIMIT = 30
stopped_by_watchdog_stub = False
try:
    import main  # noqa: F401 (runs the node)
except SystemExit:
    stopped_by_watchdog_stub = True

uart = machine.UARTS[0] if machine.UARTS else None
de_pin = node_config.get("de_pin")
result = {
    "uart": bytes(uart.written).hex() if uart else "",
    "uart_args": uart.args if uart else None,
    "de_levels_at_write": [w.get(de_pin) for w in uart.outputs_at_write] if uart else [],
    "de_final": machine.PINS[de_pin].value() if de_pin in machine.PINS else None,
    "wdt_armed": bool(machine.WDTS),
    "stopped_by_watchdog_stub": stopped_by_watchdog_stub,
    "feeds": machine.WDTS[0].feeds if machine.WDTS else 0,
}
print(json.dumps(result))
