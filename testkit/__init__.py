"""What the tests and the benchmarks share: real components to run the hub's parts against.

* ``testkit.broker``: a real Mosquitto on a free loopback port (restartable, persistent or not,
  with extra configuration lines), and a factory that starts several.
* ``testkit.mqtt``: a subscriber that collects messages (and when each arrived), publishing
  helpers, a connected paho client.
* ``testkit.waiting``: ``wait_until``, for conditions other threads make true.
* ``testkit.publisher``: a publisher that records what the dispatcher hands it and PUBACKs
  only when told, for tests of the dispatcher without a network.
* ``testkit.link``: a dispatcher wired to a real uplink, as the hub wires them.
* ``testkit.hubs``: the default simulated hub's config with tables replaced or left out (the
  camera, the sensor bus), and the simulated hub running for a ``with`` block.
* ``testkit.receivers``: commune receivers started for a test and always stopped.
* ``testkit.proxy``: a TCP proxy that can swallow every byte without closing, as a dead NAT
  entry does.

It imports only public names of core, settings, gateway, commune and hw_sim (and paho).
"""
