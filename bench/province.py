"""A province on one machine: ``tuquan fleet`` hubs on 4 commune Mosquittos bridged (by the
config ``tuquan bridge-config`` writes) to a province Mosquitto, province receivers
(``tuquan receive --commune +`` in one share group) storing into PostgreSQL with a synchronous
streaming standby; health every 30 s, one telemetry event per hub per minute, then a drill of
1,000 panics within 10 s.

It prints, per size: events sent, receipted and stored, duplicates in the record, the panics'
publish → receipt latency (a receipt leaves only after the commit returned, so this bounds
publish → committed on two machines from above), and the receivers' and brokers' CPU and
memory. Against it, in the same run and over the same brokers, bridge and database: a bare
paho publisher, a bare paho subscriber that inserts each message with psycopg (autocommit,
the same synchronous standby) and publishes a receipt back, and the publisher timing publish
→ that receipt.

    python -m bench.province                 # 1,000 / 2,000 / 4,131 hubs
    python -m bench.province --hubs 4131 --receivers 1
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import parser
from testkit.bridged import BridgedBrokers
from testkit.postgres import Postgres, streaming_standby
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
COMMUNES = ["xa-1", "xa-2", "xa-3", "xa-4"]
DATABASE = "province"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Sampler:
    """CPU % and RSS of some processes, sampled every second while the run lasts."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.procs = {name: [psutil.Process(p) for p in ps] for name, ps in pids.items()}
        self.cpu: dict[str, list[float]] = {name: [] for name in pids}
        self.rss: dict[str, float] = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        for procs in self.procs.values():
            for p in procs:
                p.cpu_percent(None)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for name, procs in self.procs.items():
                try:
                    self.cpu[name].append(sum(p.cpu_percent(None) for p in procs))
                    rss = sum(p.memory_info().rss for p in procs) / 2**20
                except psutil.Error:
                    continue
                self.rss[name] = max(self.rss[name], rss)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        return {
            name: {
                "cpu_mean_pct": round(statistics.fmean(v), 1) if v else None,
                "cpu_max_pct": round(max(v), 1) if v else None,
                "rss_max_mb": round(self.rss[name], 1),
            }
            for name, v in self.cpu.items()
        }


def database_pair(root: Path) -> tuple[Postgres, Postgres]:
    primary = Postgres()
    primary.start()
    primary.create_database(DATABASE)
    standby = streaming_standby(primary, "standby1")
    standby.start()
    primary.make_synchronous("standby1")
    wait_until(lambda: primary.sql("SELECT sync_state FROM pg_stat_replication") == [("sync",)], 60)
    return primary, standby


def start_receivers(net: BridgedBrokers, url: str, root: Path, n: int) -> list[subprocess.Popen]:
    user, password = net.receiver_login
    procs = []
    for i in range(n):
        data = root / f"receiver-{i}"
        data.mkdir(parents=True, exist_ok=True)
        if i > 0:
            shutil.copy2(root / "receiver-0" / "commune.key", data / "commune.key")
        (data / "credentials.toml").write_text(f'password = "{password}"\n')
        (data / "receiver.toml").write_text(
            f'[receiver]\ncommune = "+"\nshare_group = "province"\nclient_id = "province-{i}"\n'
            f'[broker]\nhost = "{net.province.host}"\nport = {net.province.port}\n'
            f'username = "{user}"\ncredentials_file = "credentials.toml"\n'
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tuquan",
                    "receive",
                    "--config",
                    str(data / "receiver.toml"),
                    "--data-dir",
                    str(data),
                    "--store",
                    url,
                    "--log-level",
                    "WARNING",
                ],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
        )
        if i == 0:  # its key, shared by the others
            wait_until(lambda d=data: (d / "commune.key").exists(), 30)
    return procs


def run_fleet(net: BridgedBrokers, url: str, args: Any, hubs: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "tuquan", "fleet", "--hubs", str(hubs),
               "--health-s", "30", "--telemetry-per-min", "1",
               "--duration-s", str(args.duration_s), "--drill", str(args.drill),
               "--drill-within-s", "10", "--settle-s", "120", "--store", url,
               "--json", "--quiet"]  # fmt: skip
    for commune in COMMUNES:
        broker = net.communes[commune]
        command += ["--broker", f"{broker.host}:{broker.port}", "--commune", commune]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3600)
    try:
        summary: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        summary = {"error": done.stderr[-2000:]}
    summary["exit"] = done.returncode
    return summary


def duplicates(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone()
    assert row is not None
    return int(row[0]), int(row[0]) - int(row[1])


def bare_baseline(net: BridgedBrokers, url: str, count: int, within_s: float) -> dict[str, Any]:
    """A bare paho publisher on a commune broker → the bridge → a bare paho subscriber on
    the province broker that INSERTs (autocommit, synchronous standby) and publishes a receipt
    → the bridge → the publisher: publish → receipt, per message."""
    commune = COMMUNES[0]
    topic = f"tuquan/v1/{commune}/bare-hub/event/panic"
    receipt_topic = f"tuquan/v1/{commune}/bare-hub/receipt"
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE IF NOT EXISTS bare_events (id TEXT PRIMARY KEY, payload TEXT)")
    inserter = psycopg.connect(url, autocommit=True)
    user, password = net.receiver_login
    consumer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-consumer",
                           protocol=mqtt.MQTTv5)  # fmt: skip
    consumer.username_pw_set(user, password)

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        event = json.loads(msg.payload)
        inserter.execute(
            "INSERT INTO bare_events VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (event["id"], msg.payload.decode()),
        )
        client.publish(receipt_topic, json.dumps({"ids": [event["id"]]}), qos=1)

    consumer.on_message = on_message
    consumer.connect(net.province.host, net.province.port)
    consumer.subscribe(topic, qos=1)
    consumer.loop_start()
    sent: dict[str, float] = {}
    latency: list[float] = []
    lock = threading.Lock()

    def on_receipt(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        for event_id in json.loads(msg.payload)["ids"]:
            with lock:
                start = sent.pop(event_id, None)
            if start is not None:
                latency.append((now - start) * 1000)

    broker = net.communes[commune]
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-publisher",
                            protocol=mqtt.MQTTv5)  # fmt: skip
    publisher.on_message = on_receipt
    publisher.connect(broker.host, broker.port)
    publisher.subscribe(receipt_topic, qos=1)
    publisher.loop_start()
    time.sleep(2)  # both subscriptions in place, and the bridge's
    gap = within_s / count
    for _ in range(count):
        event_id = str(uuid.uuid4())
        payload = json.dumps({"id": event_id, "kind": "panic", "priority": 0})
        with lock:
            sent[event_id] = time.perf_counter()
        publisher.publish(topic, payload, qos=1)
        time.sleep(gap)
    wait_until(lambda: len(latency) >= count, 120, "the bare receipts")
    publisher.loop_stop()
    consumer.loop_stop()
    inserter.close()
    return {
        "count": len(latency),
        "p50_ms": round(percentile(latency, 50), 1),
        "p99_ms": round(percentile(latency, 99), 1),
        "max_ms": round(max(latency), 1),
    }


def one_size(hubs: int, args: Any) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="tuquan-province-", dir=args.data_root))
    primary = standby = None
    procs: list[subprocess.Popen] = []
    try:
        primary, standby = database_pair(root)
        url = primary.url_for(DATABASE)
        per_commune = hubs // len(COMMUNES) + 1
        sizing = ["--events-per-hub-per-min", "1"]
        with BridgedBrokers(root / "mqtt", COMMUNES, hubs=per_commune, sizing=sizing) as net:
            procs = start_receivers(net, url, root, args.receivers)
            time.sleep(3)
            pids = {
                "receivers": [p.pid for p in procs],
                "province broker": [net.province.pid or 0],
                "commune brokers": [b.pid or 0 for b in net.communes.values()],
            }
            sampler = Sampler(pids)
            summary = run_fleet(net, url, args, hubs)
            resources = sampler.stop()
            rows, dupes = duplicates(url)
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
            procs = []
            bare = bare_baseline(net, url, args.drill, 10.0)
        alarm = summary.get("latency_ms", {}).get("alarm", {})
        return {
            "hubs": hubs,
            "receivers": args.receivers,
            "fleet_exit": summary.get("exit"),
            "events": summary.get("events"),
            "stored_rows": rows,
            "duplicates_in_record": dupes,
            "lost": summary.get("loss", {}).get("count"),
            "alarm_latency_ms": alarm,
            "bare_latency_ms": bare,
            "p99_ratio": round(alarm["p99"] / bare["p99_ms"], 2) if alarm.get("p99") else None,
            "p50_ratio": round(alarm["p50"] / bare["p50_ms"], 2) if alarm.get("p50") else None,
            "resources": resources,
            "connect_s": summary.get("connect_s"),
            "latency_ms": summary.get("latency_ms"),
            "error": summary.get("error"),
        }
    finally:
        for p in procs:
            p.kill()
        for server in (primary, standby):
            if server is not None:
                server.stop("immediate")
                server.remove()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--hubs", type=int, action="append", help="sizes (default 1000 2000 4131)")
    p.add_argument("--receivers", type=int, default=2)
    p.add_argument("--duration-s", type=float, default=90.0)
    p.add_argument("--drill", type=int, default=1000)
    args = p.parse_args()
    sizes = args.hubs or ([200] if args.quick else [1000, 2000, 4131])
    for hubs in sizes:
        result = one_size(hubs, args)
        line = json.dumps(result)
        print(line, flush=True)
        if args.json:
            with open(args.json, "a") as out:
                out.write(line + "\n")


if __name__ == "__main__":
    main()
