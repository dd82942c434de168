# One sensor node's settings: copy this file to the board as config.py (`mpremote cp
# firmware_py/config.py :config.py`) after setting node_id and the pins. Keys not given take the
# defaults in node.py (DEFAULTS); a bad or unknown key stops main.py with a message naming it.
#
# This example: a Raspberry Pi Pico with a smoke detector, a panic button and a case tamper
# switch, on RS-485 through a MAX3485-style transceiver, battery on VSYS.

NODE = {
    "node_id": 1,  # unique on the bus, 1..65534; the hub's config names the node by it
    # Link: UART0 on GP0 (TX) / GP1 (RX); RS-485 DE and /RE tied together on GP2.
    "uart_id": 0,
    "tx_pin": 0,
    "rx_pin": 1,
    "baud": 115200,  # the same as the hub's [[buses]] baud (its default)
    "rs485": True,
    "de_pin": 2,
    # Inputs: "active" is the level meaning alarm (or, for tamper, case open).
    "inputs": {
        # the detector's alarm output, an open-collector transistor pulling low in alarm
        "smoke": {"pin": 15, "active": 0, "pull": "up"},
        # a normally open push button to ground
        "panic": {"pin": 14, "active": 0, "pull": "up"},
        # a normally closed case switch to ground: opening the case lets the pin go high
        "tamper": {"pin": 13, "active": 1, "pull": "up"},
    },
    "smoke_level_pin": 26,  # the detector's analog output (ADC0), or None
    "battery_pin": 29,  # Pico: VSYS / 3 on ADC3 (GPIO29)
    "battery_divider": 3.0,
    "adc_vref_mv": 3300,
    "low_battery_mv": 3400,  # e.g. 3 x AA NiMH or one Li-ion cell
    "battery_hysteresis_mv": 150,
    "heartbeat_s": 30,  # the hub's heartbeat_s for this node; lost after 8 missed (4 min)
    "watchdog_ms": 5000,
}
