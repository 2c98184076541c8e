# shellcheck shell=bash
# Workstation-side helpers for deploy.sh and uninstall.sh (sourced, never run).
#
# Talking to the Pi: plain ssh with the user's SSH_OPTS first (ssh keeps the first value it
# sees for an option, so SSH_OPTS overrides our defaults). Files travel as a tar stream over
# that same ssh rather than with scp/rsync: nothing beyond tar is needed on the Pi, and
# options such as `-p PORT` mean the same thing for every call (scp spells it -P).

ws_step() { printf '==> %s\n' "$*"; }
ws_say() { printf '%s\n' "$*"; }

# ws_die CODE WHAT TODO
ws_die() {
    printf 'ERROR: %s\n' "$2" >&2
    [[ -n ${3:-} ]] && printf '  what to do: %s\n' "$3" >&2
    exit "$1"
}

ws_is_true() {
    case ${1:-} in 1 | y | yes | true | on | TRUE | YES) return 0 ;; *) return 1 ;; esac
}

# Quote one word for a POSIX shell on the far side of ssh.
sq() {
    local s=${1//\'/\'\\\'\'}
    printf "'%s'" "$s"
}

# Sets PI, PI_HOST, SSH (array), PYTHON from the environment `make` passes.
ws_load_env() {
    PI=${PI:-}
    if [[ -z $PI ]]; then
        ws_die 2 "PI is not set: which Raspberry Pi should this go to?" \
            "make ${1:-deploy} PI=pi@raspberrypi.local (user@host; the user needs ssh key login and passwordless sudo, or is root)"
    fi
    PI_HOST=${PI#*@}
    if [[ -n ${PI_ROOT:-} && ${PI_ROOT} != /* ]]; then
        ws_die 2 "PI_ROOT=$PI_ROOT must be an absolute path on the Pi" "leave PI_ROOT empty for a real install"
    fi
    local user_opts=()
    read -r -a user_opts <<<"${SSH_OPTS:-}"
    # BatchMode: never hang `make` on a password prompt; key login is a prerequisite.
    SSH=(ssh "${user_opts[@]}" -o BatchMode=yes -o ConnectTimeout=10
        -o ServerAliveInterval=15 -o ServerAliveCountMax=8)
    ws_default_python
}

# PYTHON: the workstation interpreter with the project's build tools.
ws_default_python() {
    if [[ -z ${PYTHON:-} ]]; then
        if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
    fi
}

# Fail early, with a diagnosis, when the Pi cannot be reached or logged into.
ws_probe_ssh() {
    local err
    if err=$("${SSH[@]}" "$PI" true 2>&1 </dev/null); then
        return 0
    fi
    local last=${err##*$'\n'} todo
    case $err in
        *"Could not resolve hostname"* | *"Name or service not known"*)
            todo="check the name: ping $PI_HOST (a .local name needs mDNS/avahi on both machines), or use the Pi's IP address: PI=user@192.168.x.y" ;;
        *"Connection refused"*)
            todo="ssh is not running on $PI_HOST: enable it (Raspberry Pi Imager > OS customisation > Services, or sudo raspi-config > Interface Options > SSH), or pass the right port: SSH_OPTS='-p PORT'" ;;
        *"timed out"* | *"No route to host"* | *"Network is unreachable"*)
            todo="is the Pi powered and on the same network? ping $PI_HOST" ;;
        *"Permission denied"* | *"Too many authentication failures"*)
            todo="key login failed: run ssh-copy-id $PI once (the deploy never types passwords), or pass a key: SSH_OPTS='-i ~/.ssh/KEY'" ;;
        *"Host key verification failed"* | *"REMOTE HOST IDENTIFICATION HAS CHANGED"*)
            todo="the Pi's host key is unknown or changed (a re-flashed SD card): ssh $PI once to accept it, or ssh-keygen -R $PI_HOST after a re-flash" ;;
        *) todo="check that 'ssh $PI' works from this machine" ;;
    esac
    ws_die 7 "cannot reach $PI over ssh: $last" "$todo"
}

# Names of the environment variables forwarded to the Pi: the documented knobs, every
# exported CAR_DETECTOR_*, and the ids a dry run passes to install.sh --plan.
ws_forwarded_names() {
    local name
    for name in PI_ROOT DRY_RUN PURGE CD_MODEL_ID CD_CONFIG_SHA CD_UNIT_SHA CD_SOURCE_KIND CD_WHEEL_NAME \
        CD_WHEEL_DIGEST $(compgen -e | grep -E '^CAR_DETECTOR_[A-Z0-9_]+$' || true); do
        if [[ -n ${!name+x} ]]; then
            printf '%s\n' "$name"
        fi
    done
}

# The remote command that runs WORDS... as root: directly when logged in as root (or when
# PI_ROOT makes root unnecessary), else through `sudo -n`, which fails instead of asking for
# a password. The snippet itself is constant; everything variable arrives as quoted
# arguments, so no value is ever re-parsed by the remote shell.
# shellcheck disable=SC2016 # expanded on the Pi, not here
REMOTE_ROOT_SNIPPET='pi_root=$1; shift
if [ "$(id -u)" -ne 0 ] && [ -z "$pi_root" ]; then
    u=$(id -un); h=$(hostname)
    if ! command -v sudo >/dev/null 2>&1; then
        printf "ERROR on %s: user %s is not root and sudo is not installed; installing car-detector needs root\n  what to do: deploy as root (PI=root@%s), or install sudo and give %s passwordless sudo\n" "$h" "$u" "$h" "$u" >&2
        exit 3
    fi
    if ! sudo -n true 2>/dev/null; then
        printf "ERROR on %s: user %s cannot use sudo without a password (sudo -n true failed); the install needs root and cannot answer a password prompt\n  what to do: on the Pi run: echo \"%s ALL=(ALL) NOPASSWD: ALL\" | sudo tee /etc/sudoers.d/010_%s-nopasswd   (Raspberry Pi OS does this for the first user), or deploy as a user that has it\n" "$h" "$u" "$u" "$u" >&2
        exit 3
    fi
    exec sudo -n env "$@"
fi
exec env "$@"'

remote_root_cmd() {
    local out name word
    out="sh -c $(sq "$REMOTE_ROOT_SNIPPET") car-detector-deploy $(sq "${PI_ROOT:-}")"
    for name in $(ws_forwarded_names); do out+=" $(sq "$name=${!name}")"; done
    for word in "$@"; do out+=" $(sq "$word")"; done
    printf '%s' "$out"
}

# Same content id as tree_id in pi-lib.sh (the Pi computes it over the copied bundle).
ws_tree_id() {
    (cd "$1" && find -L . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) </dev/null |
        sha256sum | cut -c1-12
}
