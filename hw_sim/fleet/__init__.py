"""``tuquan fleet``: thousands of lightweight simulated hubs in one process, each speaking the
hub's whole wire contract, spread over several commune brokers, with a handful of full
simulated hubs among them; at the end, what was sent, receipted and stored, the duplicates,
the seq gaps, the latencies, and every loss (docs/fleet.md).

- ``profile.py``: what a run does (``FleetProfile``), checked before it starts;
- ``net_loop.py``: one thread driving many paho clients (paho's external-loop API);
- ``connector.py``: connects made off the loops' threads, at a bounded rate;
- ``light_hub.py``: one simulated hub's wire contract; ``ledger.py`` its account of events;
  ``payloads.py`` its events and health; ``commands.py`` its commands;
- ``full_hubs.py``: the real hub on simulated hardware, in process;
- ``keys.py``: the hubs' signing keys; ``load.py``: rates, phases and the drill;
- ``runner.py``: a run from start to ``summary.py``.
"""

from hw_sim.fleet.profile import BrokerTarget, FleetError, FleetProfile, HubTiming, broker_targets
from hw_sim.fleet.runner import Fleet
from hw_sim.fleet.summary import Summary, render_text

__all__ = [
    "BrokerTarget",
    "Fleet",
    "FleetError",
    "FleetProfile",
    "HubTiming",
    "Summary",
    "broker_targets",
    "render_text",
]
