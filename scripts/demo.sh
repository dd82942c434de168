#!/usr/bin/env bash
# `make demo`: a simulated guard post reports a panic to a commune receiver, end to end.
#
#   broker    Mosquitto on 127.0.0.1:1883: the one already answering there, or one started
#             here (loopback only, config in a temp dir) and stopped at the end
#   console   tuquan console                     the commune's receiver (stores events, receipts
#             them), its duty desk (alerts, hub supervision) and the web console on
#             http://127.0.0.1:8080 (DEMO_CONSOLE_PORT), in one process
#   hub       tuquan run --sim                   the default simulated guard post
#   mqtt      mosquitto_sub -v 'tuquan/v1/demo/#' everything on the wire
#
# Before the hub starts, each side is enrolled at the other with `tuquan keys`: the hub's key at
# the receiver (which then verifies its events), the commune's key at the hub (which then takes
# only signed receipts); both fingerprints are printed.
#
# The panic button is pressed and released through the simulator, the alert shows up in the
# console's queue (printed with `tuquan watch --once`), and the hub's status shows the siren
# sounding and the event delivered. Then
# everything is stopped (the hub publishes "offline" as it goes) and the script exits 0, or
# non-zero if a step failed. DEMO_KEEP=1 keeps it all running until Ctrl-C, to drive the
# simulator by hand and watch it in the browser: it ends by printing the console's URL and an
# operator's login. DEMO_PORT changes the broker port (default 1883), DEMO_CONSOLE_PORT the
# console's (default 8080), DEMO_PASSWORD the operator's password.
#
# Data stays in data/demo-hub (outbox, hub.log) and data/demo-receiver (receiver.sqlite3 with
# the alerts and the console's users, receiver.toml, console.log) between runs, so seq numbers go on from one run to the next; `make clean`
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
CONSOLE_PORT=${DEMO_CONSOLE_PORT:-8080}
CONSOLE_URL=http://$HOST:$CONSOLE_PORT/
OPERATOR=truc-ban
OPERATOR_PASSWORD=${DEMO_PASSWORD:-demo-truc-ban}
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
        printf '\nLogs: %s/hub.log, %s/console.log. The commune'"'"'s store: %s/receiver.sqlite3\n' \
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

# True once a panic alert has an event from after $1 (an ISO-8601 UTC time): a new one, or
# one it joined (a panic within two minutes of the last is the same incident).
panic_alerted() {
    "$BIN/python" - "$1" "$RX_DIR/receiver.sqlite3" <<'EOF'
import sqlite3, sys

since, path = sys.argv[1], sys.argv[2]
try:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    found = db.execute(
        "SELECT count(*) FROM alerts WHERE kind = 'panic' AND last_event_at >= ?", (since,)
    ).fetchone()[0]
except sqlite3.Error:
    found = 0
sys.exit(0 if found else 1)
EOF
}

mkdir -p "$HUB_DIR" "$RX_DIR"

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

# -- the commune's console (receiver, duty desk, web pages) ------------------------------------
step "commune console"
cat >"$RX_DIR/receiver.toml" <<EOF
# Written by scripts/demo.sh: the demo commune's receiver and console.
[receiver]
commune = "$COMMUNE"

[broker]
host = "$HOST"
port = $PORT

[[hubs]]
id = "sim-hub"
name = "Chợ An Đông, trạm gác (mô phỏng)"
place = "34 An Dương Vương"
latitude = 10.7570
longitude = 106.6730
contact = "Tổ trưởng tổ tự quản"

[[hubs]]   # expected but not simulated: after a minute or so, a communication trouble
id = "to-tu-quan-2"
name = "Tổ tự quản số 2 (chưa lắp đặt)"
latitude = 10.7592
longitude = 106.6768

[console]
listen = "$HOST:$CONSOLE_PORT"
EOF
say "an operator's login: $OPERATOR (tuquan console user add, the password on stdin)"
if ! printf '%s\n' "$OPERATOR_PASSWORD" |
    "$BIN/tuquan" console user add "$OPERATOR" --role operator --data-dir "$RX_DIR" >/dev/null 2>&1; then
    printf '%s\n' "$OPERATOR_PASSWORD" |
        "$BIN/tuquan" console user passwd "$OPERATOR" --data-dir "$RX_DIR" >/dev/null
fi
say "$BIN/tuquan console --config $RX_DIR/receiver.toml --data-dir $RX_DIR"
setsid "$BIN/tuquan" console --config "$RX_DIR/receiver.toml" --data-dir "$RX_DIR" \
    >"$RX_DIR/console.log" 2>&1 &
started "commune console" $!
rx_pid=$!
rx_subscribed() { alive "$rx_pid" && grep -q "subscribed to" "$RX_DIR/console.log"; }
if ! wait_for 20 rx_subscribed; then
    alive "$rx_pid" || { cat "$RX_DIR/console.log" >&2; fail "the console exited"; }
    say "(the receiver has not said it subscribed yet; going on: the hub re-sends if needed)"
fi
say "receiving; the web console is on $CONSOLE_URL (log: $RX_DIR/console.log)"

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
wait_for 20 panic_alerted "$pressed_at" ||
    fail "no panic alert at the console within 20 s (see $HUB_DIR/hub.log, $RX_DIR/console.log)"
say "\$ tuquan watch --once --data-dir $RX_DIR --config $RX_DIR/receiver.toml   # the queue"
"$BIN/tuquan" watch --once --data-dir "$RX_DIR" --config "$RX_DIR/receiver.toml" | sed 's/^/   /' 
wait_for 10 alarms_delivered ||
    say "(the receipt has not reached the hub yet; the hub sends the event again until it does)"
sleep 0.3

step "the hub's state: siren sounding, the alarm delivered"
say "\$ tuquan sim --data-dir $HUB_DIR status"
sim status | sed 's/^/   /'

if [ "$KEEP" = 1 ]; then
    step "still running (DEMO_KEEP=1): Ctrl-C stops everything"
    say "the police console: $CONSOLE_URL"
    say "  log in as $OPERATOR, password $OPERATOR_PASSWORD (an operator: acknowledge, close, silence)"
    say "  or in a terminal: $BIN/tuquan watch --data-dir $RX_DIR --config $RX_DIR/receiver.toml"
    say "in another terminal, from $(pwd):"
    say "  $BIN/tuquan sim --data-dir $HUB_DIR hold silence-1 --seconds 0.5  # silence the siren"
    say "  $BIN/tuquan sim --data-dir $HUB_DIR press tamper-1     # open the hub's case (release: restore)"
    say "  $BIN/tuquan sim --data-dir $HUB_DIR hold panic-1 --seconds 4   # held 3 s: duress"
    say "  $BIN/tuquan sim --data-dir $HUB_DIR camera cam-1 walk   # a person crosses: a picture"
    say "  $BIN/tuquan sim --data-dir $HUB_DIR status"
    say "  mosquitto_pub -h $HOST -p $PORT -t tuquan/v1/$COMMUNE/sim-hub/cmd/silence -m '{\"by\": \"duty officer\"}'"
    while alive "$hub_pid"; do sleep 1; done
    fail "the simulated hub exited (see $HUB_DIR/hub.log)"
fi
say "(DEMO_KEEP=1 make demo keeps it running, with the web console on $CONSOLE_URL and a login)"
