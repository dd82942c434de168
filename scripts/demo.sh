#!/usr/bin/env bash
# `make demo`: a simulated guard post reports a panic to a commune receiver, end to end.
#
#   broker    Mosquitto on 127.0.0.1:1883: the one already answering there, or one started
#             here (loopback only, config in a temp dir) and stopped at the end
#   receiver  tuquan receive --commune demo      stores events, receipts them, prints alerts
#   hub       tuquan run --sim                   the default simulated guard post
#   mqtt      mosquitto_sub -v 'tuquan/v1/demo/#' everything on the wire
#
# Before the hub starts, each side is enrolled at the other with `tuquan keys`: the hub's key at
# the receiver (which then verifies its events), the commune's key at the hub (which then takes
# only signed receipts); both fingerprints are printed.
#
# The panic button is pressed and released through the simulator, the alert shows up at the
# receiver, and the hub's status shows the siren sounding and the event delivered. Then
# everything is stopped (the hub publishes "offline" as it goes) and the script exits 0, or
# non-zero if a step failed. DEMO_KEEP=1 keeps it all running until Ctrl-C, to drive the
# simulator by hand. DEMO_PORT changes the broker port (default 1883).
#
# Data stays in data/demo-hub (outbox, hub.log) and data/demo-receiver (receiver.sqlite3,
# receiver.log) between runs, so seq numbers go on from one run to the next; `make clean`
# removes them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh --clients

BIN=.venv/bin
HOST=127.0.0.1
PORT=${DEMO_PORT:-1883}
BROKER=$HOST:$PORT
COMMUNE=demo
HUB_DIR=data/demo-hub
RX_DIR=data/demo-receiver
KEEP=${DEMO_KEEP:-0}
PATH=$PATH:/usr/sbin # Debian's mosquitto lives there

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tuquan-demo.XXXXXX")
names=()
pids=()

if [ -t 1 ]; then B=$'\e[1m' R=$'\e[0m'; else B='' R=''; fi
step() { printf '\n%s== %s%s\n' "$B" "$*" "$R"; }
say() { printf '   %s\n' "$*"; }
fail() {
    printf '\n%sdemo failed: %s%s\n' "$B" "$*" "$R" >&2
    exit 1
}

started() { # NAME PID: remember a background process to stop at the end
    names+=("$1")
    pids+=("$2")
}

# True while PID runs (an exited child that was not collected yet is a zombie: not running).
alive() {
    local state
    state=$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$1/stat" 2>/dev/null) && [ -n "$state" ] &&
        [ "$state" != Z ]
}

stop_process() { # NAME PID: SIGTERM, wait up to 15 s, then SIGKILL
    local name=$1 pid=$2 i
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if [ "$i" -eq 150 ]; then
        say "($name did not stop within 15 s of SIGTERM; killed)"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}

cleanup() {
    local rc=$? i
    set +e
    trap '' INT TERM HUP PIPE
    if [ "${#pids[@]}" -gt 0 ]; then
        step "stopping"
        # Newest first: the hub goes before the subscriber, so its "offline" is seen.
        for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
            say "${names[i]}"
            stop_process "${names[i]}" "${pids[i]}"
            sleep 0.3
        done
    fi
    rm -rf "$WORK"
    if [ "$rc" -eq 0 ]; then
        printf '\nLogs: %s/hub.log, %s/receiver.log. The receiver'"'"'s store: %s/receiver.sqlite3\n' \
            "$HUB_DIR" "$RX_DIR" "$RX_DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
# The services run in their own sessions (setsid), so Ctrl-C reaches only this script, which
# then stops them in order: the hub first, while the broker is still there for its "offline".

wait_for() { # SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds, for at most SECONDS
    local seconds=$1 deadline
    shift
    deadline=$((SECONDS + seconds))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null; }
mqtt_ok() { mosquitto_pub -h "$HOST" -p "$PORT" -t tuquan-demo/probe -n >/dev/null 2>&1; }
sim() { "$BIN/tuquan" sim --data-dir "$HUB_DIR" "$@"; }
sim_quiet() { sim "$@" >/dev/null 2>&1; }

# The simulated hub's status, as JSON on stdout; one field with `status_field NAME`.
status_field() {
    sim status 2>/dev/null | "$BIN/python" -c "import json, sys; print(json.load(sys.stdin)$1)"
}
hub_online() { [ "$(status_field "['online']")" = True ]; }
# True once no alarm is waiting for its receipt (the commune has confirmed it).
alarms_delivered() { [ "$(status_field "['outbox'].get('undelivered_alarm', 0)")" = 0 ]; }

# Prints the receiver's alert feed (one JSON object per line) for people.
SHOW_ALERTS=$(
    cat <<'EOF'
import json, sys

for line in sys.stdin:
    try:
        e = json.loads(line)
        label = "ALERT" if e["priority"] == 0 else "event"
        if e.get("verified") is False:
            label = f"UNVERIFIED {e['kind']} (not a genuine alarm: {e.get('reason')})"
        restore = " (restore)" if e["qualifier"] == "R" else ""
        print(
            f"  receiver | {label}: {e['kind']}{restore} at hub {e['hub']}, zone {e['zone']}"
            f" - Contact ID {e['cid']} {e['qualifier']}, seq {e['seq']}, {e['ts']}",
            flush=True,
        )
    except (ValueError, KeyError, TypeError):
        print("  receiver | " + line.rstrip(), flush=True)
EOF
)

# True once the receiver has printed a panic newer than $1 (an ISO-8601 UTC time).
panic_received() {
    "$BIN/python" - "$1" "$WORK/alerts.jsonl" <<'EOF'
import json, sys

since, path = sys.argv[1], sys.argv[2]
with open(path) as feed:
    events = [json.loads(line) for line in feed if line.strip()]
genuine = (e for e in events if e.get("verified") is not False)
sys.exit(0 if any(e["kind"] == "panic" and e["ts"] >= since for e in genuine) else 1)
EOF
}

mkdir -p "$HUB_DIR" "$RX_DIR"
: >"$WORK/alerts.jsonl"

# -- broker ------------------------------------------------------------------------------------
step "broker"
if tcp_open; then
    mqtt_ok || fail "something listens on $BROKER but does not take anonymous MQTT clients;
   stop it, or run the demo on another port: DEMO_PORT=1884 make demo"
    say "reusing the MQTT broker already answering on $BROKER"
else
    cat >"$WORK/mosquitto.conf" <<EOF
listener $PORT $HOST
allow_anonymous true
persistence false
EOF
    # Started as root, Mosquitto drops to the user "mosquitto"; this throwaway broker need not.
    if [ "$(id -u)" -eq 0 ]; then echo "user root" >>"$WORK/mosquitto.conf"; fi
    setsid mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
    started "broker (Mosquitto started for the demo)" $!
    broker_pid=$!
    if ! wait_for 10 tcp_open || ! alive "$broker_pid"; then
        cat "$WORK/mosquitto.log" >&2
        fail "Mosquitto did not start on $BROKER"
    fi
    say "started Mosquitto on $BROKER (loopback only; stopped at the end)"
fi

# -- everything on the wire ----------------------------------------------------------------------
setsid mosquitto_sub -h "$HOST" -p "$PORT" -v -t "tuquan/v1/$COMMUNE/#" \
    > >(trap '' INT && exec sed -u 's/^/  mqtt     | /') 2>&1 &
started "mosquitto_sub" $!
say "watching tuquan/v1/$COMMUNE/# (lines marked mqtt)"

# -- commune receiver ----------------------------------------------------------------------------
step "commune receiver"
say "$BIN/tuquan receive --broker $BROKER --data-dir $RX_DIR --commune $COMMUNE"
setsid "$BIN/tuquan" receive --broker "$BROKER" --data-dir "$RX_DIR" --commune "$COMMUNE" \
    2>"$RX_DIR/receiver.log" > >(trap '' INT && tee -a "$WORK/alerts.jsonl" | "$BIN/python" -u -c "$SHOW_ALERTS") &
started "commune receiver" $!
rx_pid=$!
rx_subscribed() { alive "$rx_pid" && grep -q "subscribed to" "$RX_DIR/receiver.log"; }
if ! wait_for 15 rx_subscribed; then
    alive "$rx_pid" || { cat "$RX_DIR/receiver.log" >&2; fail "the receiver exited"; }
    say "(the receiver has not said it subscribed yet; going on: the hub re-sends if needed)"
fi

# -- enrolment -----------------------------------------------------------------------------------
step "enrolment: the hub's key at the receiver, the commune's key at the hub"
keys() { "$BIN/tuquan" keys "$@"; }
say "\$ tuquan keys init --data-dir $HUB_DIR"
keys init --data-dir "$HUB_DIR" 2>/dev/null | sed 's/^/   /'
hub_key=$(keys show --data-dir "$HUB_DIR" | head -n 1)
say "\$ tuquan keys trust sim-hub $hub_key --data-dir $RX_DIR"
keys trust sim-hub "$hub_key" --data-dir "$RX_DIR" | sed 's/^/   /'
say "\$ tuquan keys init --receiver --data-dir $RX_DIR   # the receiver made it at its start"
keys init --receiver --data-dir "$RX_DIR" 2>/dev/null | sed 's/^/   /'
commune_key=$(keys show --receiver --data-dir "$RX_DIR" | head -n 1)
say "\$ tuquan keys trust --commune $commune_key --data-dir $HUB_DIR"
keys trust --commune "$commune_key" --data-dir "$HUB_DIR" | sed 's/^/   /'

# -- simulated hub -------------------------------------------------------------------------------
step "simulated hub"
say "$BIN/tuquan run --sim --broker $BROKER --data-dir $HUB_DIR"
setsid "$BIN/tuquan" run --sim --broker "$BROKER" --data-dir "$HUB_DIR" 2>"$HUB_DIR/hub.log" &
started "simulated hub" $!
hub_pid=$!
hub_ready() { alive "$hub_pid" && sim_quiet status; }
if ! wait_for 30 hub_ready; then
    cat "$HUB_DIR/hub.log" >&2
    fail "the simulated hub did not answer 'tuquan sim --data-dir $HUB_DIR status'"
fi
wait_for 15 hub_online || fail "the hub did not connect to $BROKER (see $HUB_DIR/hub.log)"
say "up and connected (log: $HUB_DIR/hub.log)"
sleep 0.5 # let the retained status and health show first

# -- a resident presses the panic button ---------------------------------------------------------
step "a resident presses the panic button"
pressed_at=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
say "\$ tuquan sim --data-dir $HUB_DIR press panic-1"
sim press panic-1 | sed 's/^/   /'
sleep 0.3
say "\$ tuquan sim --data-dir $HUB_DIR release panic-1"
sim release panic-1 | sed 's/^/   /'
wait_for 20 panic_received "$pressed_at" ||
    fail "no panic reached the receiver within 20 s (see $HUB_DIR/hub.log, $RX_DIR/receiver.log)"
wait_for 10 alarms_delivered ||
    say "(the receipt has not reached the hub yet; the hub sends the event again until it does)"
sleep 0.3

step "the hub's state: siren sounding, the alarm delivered"
say "\$ tuquan sim --data-dir $HUB_DIR status"
sim status | sed 's/^/   /'

if [ "$KEEP" = 1 ]; then
    step "still running (DEMO_KEEP=1): Ctrl-C stops everything"
    say "in another terminal, from $(pwd):"
    say "  $BIN/tuquan sim --data-dir $HUB_DIR hold silence-1 --seconds 0.5  # silence the siren"
    say "  $BIN/tuquan sim --data-dir $HUB_DIR press tamper-1     # open the hub's case (release: restore)"
    say "  $BIN/tuquan sim --data-dir $HUB_DIR hold panic-1 --seconds 4   # held 3 s: duress"
    say "  $BIN/tuquan sim --data-dir $HUB_DIR status"
    say "  mosquitto_pub -h $HOST -p $PORT -t tuquan/v1/$COMMUNE/sim-hub/cmd/silence -m '{\"by\": \"duty officer\"}'"
    while alive "$hub_pid"; do sleep 1; done
    fail "the simulated hub exited (see $HUB_DIR/hub.log)"
fi
