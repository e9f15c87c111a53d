#!/bin/sh
# Install the Debian packages the SocketCAN harness (hil/socketcan) needs, only when missing.
#   user-mode-linux  a Linux kernel as a user process, with CAN/vcan modules (when the host has no vcan)
#   kmod             insmod/modprobe (loads the CAN modules inside UML, or vcan on a laptop)
#   can-utils        candump, cansend, ... (used on the host and inside UML)
#   iproute2         ip link add ... type vcan
# Idempotent: exits 0 without touching apt when everything is installed. Needs root (or sudo)
# only when something is missing. Called by `make test` / CI; safe to run by hand.
set -eu

PACKAGES="user-mode-linux kmod can-utils iproute2"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing="$missing $pkg"
done

if [ -z "$missing" ]; then
    exit 0
fi

# Parallel callers (e.g. two pytest-xdist workers) install one at a time; the second one
# then re-checks and finds everything present.
if [ -z "${BMS_DEPS_LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
    export BMS_DEPS_LOCKED=1
    exec flock "${TMPDIR:-/tmp}/bms-install-system-deps.lock" sh "$0" "$@"
fi

# The host kernel can provide vcan itself (a laptop): then user-mode Linux is optional.
host_has_vcan() {
    [ -d /sys/module/vcan ] && return 0
    find "/lib/modules/$(uname -r)" -name 'vcan.ko*' 2>/dev/null | grep -q .
}

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: missing Debian packages:$missing and no apt-get here;" >&2
    echo "  install the equivalents (can-utils, iproute2, kmod) with your package manager." >&2
    if host_has_vcan; then
        exit 0  # the harness uses the host's vcan (see docs/socketcan.md)
    fi
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-system-deps: missing packages:$missing; run this script as root." >&2
        exit 1
    fi
fi

apt_install() {
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "$@" >/dev/null
}

echo "install-system-deps: installing$missing" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq -o DPkg::Lock::Timeout=600 >/dev/null
# shellcheck disable=SC2086
if ! apt_install $missing; then
    # user-mode-linux exists for amd64 only; a host with vcan does not need it
    rest=$(echo "$missing" | sed 's/ user-mode-linux//')
    if [ "$rest" != "$missing" ] && host_has_vcan; then
        echo "install-system-deps: user-mode-linux not installable; using the host's vcan" >&2
        # shellcheck disable=SC2086
        [ -z "$rest" ] || apt_install $rest
    else
        exit 1
    fi
fi
