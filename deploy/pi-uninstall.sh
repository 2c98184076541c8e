#!/usr/bin/env bash
# Remove car-detector ON THE PI (uninstall.sh pipes pi-lib.sh + this file over ssh).
#
# Removes: the service (stopped, disabled, unit file deleted), /opt/car-detector (venvs,
# bookkeeping), the config in /etc/car-detector unless you edited it.
# Keeps, unless PURGE=1: /var/lib/car-detector (events.jsonl, capture/, the MQTT queue and
# the model versions), an edited /etc/car-detector/config.toml, and the car-detector user
# (it owns the kept files). PURGE=1 removes all of those too.
# Idempotent: on a Pi without car-detector it says so and exits 0. DRY_RUN=1 prints only.
set -euo pipefail

if [[ -z ${PI_LIB_LOADED:-} ]]; then
    # shellcheck source=deploy/pi-lib.sh
    . "$(dirname "${BASH_SOURCE[0]}")/pi-lib.sh"
fi

config_was_edited() {
    [[ -f $CD_CONFIG ]] || return 1
    [[ -f $CD_SHIPPED_CONFIG ]] || return 0
    [[ $(sha256_of "$CD_CONFIG") != "$(sha256_of "$CD_SHIPPED_CONFIG")" ]]
}

remove_service() {
    step "Service"
    if [[ -f $CD_UNIT_FILE ]]; then
        act systemctl disable --now "$CD_UNIT" </dev/null || warn "systemctl disable --now $CD_UNIT failed; removing the unit anyway"
        act rm -f "$CD_UNIT_FILE"
        act systemctl daemon-reload </dev/null || true
        act systemctl reset-failed "$CD_UNIT" </dev/null 2>/dev/null || true
    else
        say "    no unit file at $CD_UNIT_FILE"
    fi
}

remove_config() {
    local edited=$1
    step "Config"
    if is_true "${PURGE:-}"; then
        act rm -rf "$CD_ETC"
        return
    fi
    if [[ $edited == 1 ]]; then
        say "    keeping your edited $CD_CONFIG (PURGE=1 removes it)"
    elif [[ -f $CD_CONFIG ]]; then
        act rm -f "$CD_CONFIG"
    fi
    act rm -f "$CD_CONFIG.new"
    if dry; then
        say "    would remove $CD_ETC if it is empty then"
    elif [[ -d $CD_ETC && -z $(ls -A "$CD_ETC") ]]; then
        act rmdir "$CD_ETC"
    fi
}

remove_data() {
    step "Data"
    if ! is_true "${PURGE:-}"; then
        [[ -d $CD_VAR ]] && say "    keeping $CD_VAR (events, captures, models; PURGE=1 removes it)"
        return 0
    fi
    act rm -rf "$CD_VAR"
    if under_prefix; then
        say "    (PI_ROOT set: not removing the system user; a real purge runs: userdel $CD_USER)"
    elif getent passwd "$CD_USER" >/dev/null; then
        act userdel "$CD_USER"
    fi
}

main() {
    cd_init_paths
    require_root "pi-uninstall.sh"
    take_lock
    if [[ ! -e $CD_UNIT_FILE && ! -e $CD_OPT && ! -e $CD_ETC && ! -e $CD_VAR ]]; then
        say "car-detector is not installed on $CD_HOST${CD_ROOT:+ under $CD_ROOT}; nothing to remove"
        exit 0
    fi
    step "Uninstall car-detector from $CD_HOST${CD_ROOT:+ (under PI_ROOT=$CD_ROOT)}${PURGE:+ (PURGE=$PURGE)}"
    local edited=0
    config_was_edited && edited=1
    remove_service
    step "Program files"
    act rm -rf "$CD_OPT"
    remove_config "$edited"
    remove_data
    if dry; then
        say "dry run: nothing was changed on $CD_HOST"
    else
        say "car-detector removed from $CD_HOST"
    fi
}

main "$@"
exit $?
