"""Run every benchmark in sequence, each in its own process: ``python -m bench.run_all``.

Arguments (``--quick``, ``--json FILE``, ``--data-root DIR``) are passed to each benchmark.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "ingest",
    "ingest_producers",
    "drain",
    "alarm_latency",
    "rss",
    "serial_decoder",
    "node_latency",
    "camera_cpu",
    "detect",
    "camera_rss",
    "console_push",
    "console_pages",
    "reconnect",  # the reference's outages, 41 s and 93 s, three rounds: ~12 min
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== bench.{name} {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}", *args], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
