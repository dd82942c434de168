"""Drives one sensor node (firmware_py/node.py) under MicroPython, one command per input line,
so that a hub written in CPython can talk to it through pipes.

Start: run.mjs node_driver.py CONFIG_JSON [START_TICK]. The inputs named in CONFIG_JSON are
fake pins at their idle level; with smoke_level_pin / battery_pin set, "smoke_level" and
"battery" are fake ADCs (raw 0 until set). RS-485 is on when the config says so (a fake DE pin).

Commands (each answered by "DONE" on its own line):
  pin NAME 0|1      drive an input pin
  adc NAME RAW      set an ADC reading (0..65535)
  rx HEX            bytes arriving on the node's UART
  run MS            run the node loop for MS milliseconds of simulated time
  state             print "STATE " + JSON: boot, seq, outstanding, stats, state bits, battery
  quit
Every frame the node writes is printed as "TX <tick ms> <hex> <DE level or ->".
"""

import json
import sys

import compat
import host
import node
from mpfakes import FakeADC, FakePin, FakeUART, FakeWDT


class LinkUART(FakeUART):
    def on_write(self, data):
        de = self._de()
        print(f"TX {self._tick()} {data.hex()} {'-' if de is None else de}")


def main():
    config = json.loads(sys.argv[1])
    start = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    clock = compat.ManualClock(start)
    de = FakePin(0, clock) if config.get("rs485") else None
    uart = LinkUART(clock, de)
    pins = {}
    for name in config.get("inputs", {}):
        idle = 1 - config["inputs"][name].get("active", 1)
        pins[name] = FakePin(idle)
    adcs = {}
    if config.get("smoke_level_pin") is not None:
        adcs["smoke_level"] = FakeADC()
    if config.get("battery_pin") is not None:
        adcs["battery"] = FakeADC()
    wdt = FakeWDT()
    the_node = node.Node(config, uart, clock, inputs=pins, adcs=adcs, de=de, wdt=wdt)
    poll = the_node.config["poll_ms"]
    while True:
        line = host.readline()
        if line is None:
            return
        words = line.split()
        if not words:
            continue
        cmd = words[0]
        if cmd == "quit":
            return
        if cmd == "pin":
            pins[words[1]].set(int(words[2]))
        elif cmd == "adc":
            adcs[words[1]].raw = int(words[2])
        elif cmd == "rx":
            uart.deliver(bytes.fromhex(words[1]))
        elif cmd == "run":
            the_node.run(steps=(int(words[1]) + poll - 1) // poll)
        elif cmd == "state":
            state = {
                "boot": the_node.boot,
                "seq": the_node.seq,
                "outstanding": the_node.outstanding(),
                "stats": the_node.stats,
                "bits": the_node.state_bits(),
                "battery_mv": the_node.battery_mv,
                "low_battery": the_node.low_battery,
                "tick": clock.ticks_ms(),
                "feeds": wdt.feeds,
                "implementation": sys.implementation.name,
            }
            print("STATE " + json.dumps(state))
        else:
            raise ValueError("unknown command: " + line)
        print("DONE")


main()
