"""Scenario files: timed steps played against a simulated hub.

```toml
[[steps]]
at = 1.0            # seconds after the hub started
action = "press"    # press | release | hold | emit | smoke | node-panic | silence | resume | noise
input = "panic-1"   # for press, release, hold
seconds = 3.5       # for hold (and node-panic, optional)
kind = "telemetry"  # for emit
count = 10          # for emit
node = "smoke-1"    # for the sensor-node actions
level = 45000       # for smoke
ber = 0.001         # for noise
```
"""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.events import KINDS

log = logging.getLogger(__name__)

NODE_ACTIONS = {"smoke", "node-panic", "silence", "resume", "noise"}
ACTIONS = {"press", "release", "hold", "emit"} | NODE_ACTIONS
_KEYS = {"at", "action", "input", "seconds", "kind", "count", "node", "level", "ber"}


def load_scenario(path: Path) -> list[dict[str, Any]]:
    """Read and check a scenario; errors name the step and field (``steps[1].action``)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([(str(path), str(exc))]) from None
    steps = data.get("steps")
    errors: list[tuple[str, str]] = []
    if not isinstance(steps, list) or not steps:
        raise ConfigError([("steps", "a scenario needs at least one [[steps]] entry")])
    for key in set(data) - {"steps"}:
        errors.append((key, "unknown key"))
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        for key in set(step) - _KEYS:
            errors.append((f"{where}.{key}", "unknown key"))
        at = step.get("at")
        if not isinstance(at, int | float) or at < 0:
            errors.append((f"{where}.at", "must be a number of seconds ≥ 0"))
        action = step.get("action")
        if action not in ACTIONS:
            errors.append((f"{where}.action", f"must be one of {sorted(ACTIONS)}"))
        if action in {"press", "release", "hold"} and not isinstance(step.get("input"), str):
            errors.append((f"{where}.input", f"{action} needs the name of an input"))
        if action == "hold" and not isinstance(step.get("seconds"), int | float):
            errors.append((f"{where}.seconds", "hold needs seconds"))
        if action == "emit" and step.get("kind", "telemetry") not in KINDS:
            errors.append((f"{where}.kind", f"unknown event kind {step.get('kind')!r}"))
        if action in NODE_ACTIONS and not isinstance(step.get("node"), str):
            errors.append((f"{where}.node", f"{action} needs the name of a sensor node"))
        level = step.get("level")
        if action == "smoke" and (not isinstance(level, int) or not 0 <= level <= 0xFFFF):
            errors.append((f"{where}.level", "smoke needs a level from 0 to 65535"))
        if action == "noise" and not isinstance(step.get("ber"), int | float):
            errors.append((f"{where}.ber", "noise needs ber, a bit error rate"))
    if errors:
        raise ConfigError(errors)
    return sorted(steps, key=lambda s: float(s["at"]))


def step_request(step: dict[str, Any]) -> dict[str, Any]:
    """The control-channel request that carries out a step."""
    action = step["action"]
    if action == "emit":
        return {"cmd": "emit", "kind": step.get("kind", "telemetry"), "count": step.get("count", 1)}
    if action in NODE_ACTIONS:
        node_request = {"cmd": action, "name": step["node"]}
        node_request.update({k: step[k] for k in ("level", "ber", "seconds") if k in step})
        return node_request
    request = {"cmd": action, "name": step["input"]}
    if action == "hold":
        request["seconds"] = step["seconds"]
    return request


class ScenarioPlayer:
    def __init__(
        self,
        steps: list[dict[str, Any]],
        handle: Callable[[dict[str, Any]], dict[str, Any]],
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.steps = steps
        self.handle = handle
        self.on_done = on_done
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name="scenario", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _play(self) -> None:
        start = time.monotonic()
        for step in self.steps:
            delay = start + float(step["at"]) - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            answer = self.handle(step_request(step))
            log.info(
                "scenario t=%.1fs %s %s: %s",
                float(step["at"]),
                step["action"],
                step.get("input", step.get("node", step.get("kind", ""))),
                "ok" if answer.get("ok") else answer,
            )
        if self.on_done is not None:
            self.on_done()
