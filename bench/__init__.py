"""Benchmarks: each prints ratios against a bare baseline measured in the same run.

Run one with ``python -m bench.<name> [--quick]``, or all with ``python -m bench.run_all``.
Each starts its own Mosquitto on a free loopback port (testkit.broker). Figures live in
BENCHMARKS.md.
"""
