#!/usr/bin/env bash
# Remove car-detector from a Raspberry Pi over ssh. Runs on the workstation:
#
#   make uninstall PI=user@host [PURGE=1] [DRY_RUN=1] [SSH_OPTS=...] [PI_ROOT=]
#
# Stops and disables the service and removes the unit, /opt/car-detector and the default
# config. Keeps your captured data and events (/var/lib/car-detector), a config.toml you
# edited, and the car-detector user - unless PURGE=1, which removes those too.
# The on-Pi part is deploy/pi-uninstall.sh, piped over ssh (nothing is copied to the Pi)
# and run as root (sudo -n unless logged in as root). Safe to run twice.
#
# Exit codes: 0 removed (or nothing to remove), 2 bad input, 3 no root/sudo on the Pi,
# 7 the Pi cannot be reached.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=deploy/lib.sh
. "$HERE/lib.sh"
cd "$REPO"

main() {
    ws_load_env uninstall
    ws_step "Reach $PI"
    ws_probe_ssh
    local rc=0
    cat "$HERE/pi-lib.sh" "$HERE/pi-uninstall.sh" | "${SSH[@]}" "$PI" "$(remote_root_cmd bash -s)" || rc=$?
    if [[ $rc -ne 0 ]]; then
        printf 'uninstall on %s failed (exit %s); the messages above say why\n' "$PI" "$rc" >&2
    fi
    exit "$rc"
}

main "$@"
