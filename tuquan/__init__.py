"""The ``tuquan`` command line: the only package that knows the hub, the simulator, the receiver
and the detector together."""
