# shellcheck shell=bash disable=SC2034
# Helpers shared by the scripts that run ON THE PI (install.sh, pi-uninstall.sh).
#
# Sourced by those scripts when they run from a file (the deploy bundle), or concatenated
# in front of them when deploy.sh/uninstall.sh pipe them over ssh into `bash -s` (dry runs
# and uninstall copy nothing to the Pi). Every script that uses it keeps its work inside
# functions and ends with `main "$@"`, so bash has read the whole script before anything
# runs: a command that reads stdin then sees EOF instead of swallowing the script.
#
# Environment (all optional):
#   PI_ROOT        install under this prefix instead of / (tests, staging). Then no system
#                  user is created and nothing is chowned; what would be done is printed.
#   DRY_RUN=1      print every step, change nothing.
#   CAR_DETECTOR_PYTHON          interpreter the venv is made from (default: python3 on PATH).
#   CAR_DETECTOR_ALLOW_ANY_ARCH=1  accept a machine that is not aarch64/armv7l (tests, x86 boxes).
#   CAR_DETECTOR_SKIP_CAMERA_CHECK=1  do not look for a camera (deploying before it is attached).
#   CAR_DETECTOR_MIN_FREE_MB     free space required on the target (default 300).

PI_LIB_LOADED=1

CD_NAME=car-detector
CD_USER=car-detector
CD_UNIT=car-detector.service

cd_init_paths() {
    # PI_ROOT="" means the real system; strip a trailing slash so paths join cleanly.
    CD_ROOT=${PI_ROOT:-}
    CD_ROOT=${CD_ROOT%/}
    if [[ -n $CD_ROOT && $CD_ROOT != /* ]]; then
        die 2 "PI_ROOT=$CD_ROOT is not an absolute path" "pass an absolute directory, e.g. PI_ROOT=/tmp/pi-root"
    fi
    CD_OPT=$CD_ROOT/opt/car-detector
    CD_VENVS=$CD_OPT/venvs
    CD_VENV_LINK=$CD_OPT/venv
    CD_SHIPPED_CONFIG=$CD_OPT/config.default.toml   # the last default we shipped, to spot user edits
    CD_STATE_FILE=$CD_OPT/installed.env
    CD_ETC=$CD_ROOT/etc/car-detector
    CD_CONFIG=$CD_ETC/config.toml
    CD_VAR=$CD_ROOT/var/lib/car-detector
    CD_MODELS=$CD_VAR/model
    CD_MODEL_LINK=$CD_MODELS/current
    CD_CAPTURE=$CD_VAR/capture
    CD_UNIT_DIR=$CD_ROOT/etc/systemd/system
    CD_UNIT_FILE=$CD_UNIT_DIR/$CD_UNIT
    CD_HOST=$(hostname 2>/dev/null || echo "the Pi")
}

is_true() {
    case ${1:-} in 1 | y | yes | true | on | TRUE | YES) return 0 ;; *) return 1 ;; esac
}

dry() { is_true "${DRY_RUN:-}"; }

say() { printf '%s\n' "$*"; }

step() { printf '==> %s\n' "$*"; }

warn() { printf 'WARNING on %s: %s\n' "${CD_HOST:-the Pi}" "$*" >&2; }

# die CODE WHAT TODO: every fatal error says what went wrong, where, and what to do next.
die() {
    local code=$1 what=$2 todo=${3:-}
    printf 'ERROR on %s: %s\n' "${CD_HOST:-the Pi}" "$what" >&2
    [[ -n $todo ]] && printf '  what to do: %s\n' "$todo" >&2
    exit "$code"
}

# act CMD...: run a command that changes the system, or only print it in a dry run.
act() {
    if dry; then
        say "    would run: $*"
    else
        say "    + $*"
        "$@"
    fi
}

# True when the target is a throwaway root (tests): never touch users or ownership there.
under_prefix() { [[ -n $CD_ROOT ]]; }

# chown only on a real install; under PI_ROOT the service user does not exist.
own() {
    local spec=$1
    shift
    if under_prefix; then
        say "    (PI_ROOT set: skipping chown $spec $*)"
    else
        act chown "$spec" "$@"
    fi
}

sha256_of() { sha256sum "$1" </dev/null | cut -d' ' -f1; }

# The manifest.json of the model the service runs, on stdout; nothing when none is installed.
# deploy.sh and the fleet playbook send pi-lib.sh plus a call to this through `bash -s`, to
# compare a fine-tuned model with what the Pi runs before anything is built or copied.
print_installed_manifest() {
    cd_init_paths
    local manifest=$CD_MODEL_LINK/manifest.json
    if [[ -e $manifest ]]; then cat -- "$manifest" </dev/null; fi
}

# Content id of a directory: sha256 over the sorted relative paths and file hashes. The
# workstation computes the same id (deploy.sh) so a dry run can say "already installed".
tree_id() {
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) </dev/null |
        sha256sum | cut -c1-12
}

link_target_name() {
    # Basename of a symlink's target, or "" when there is no such link.
    local t
    if t=$(readlink "$1" 2>/dev/null); then
        basename "$t"
    fi
}

# Atomic symlink switch: a reader sees either the old or the new target, never neither.
switch_link() {
    local target=$1 link=$2
    act ln -sfn "$target" "$link.tmp"
    act mv -T "$link.tmp" "$link"
}

# Copy a file into place atomically (write beside, then rename) with the given mode.
place_file() {
    local src=$1 dst=$2 mode=$3
    act install -m "$mode" "$src" "$dst.tmp"
    act mv -f "$dst.tmp" "$dst"
}

systemctl_q() { systemctl "$@" </dev/null; }

service_active() { systemctl_q is-active --quiet "$CD_UNIT" 2>/dev/null; }

# The run-as-root rule: the real system needs root (deploy.sh/uninstall.sh get there with
# sudo -n); a PI_ROOT prefix may be installed by anyone who can write it.
require_root() {
    if [[ $(id -u) -ne 0 ]] && ! under_prefix; then
        die 3 "$1 must run as root (running as $(id -un))" \
            "run it through 'make deploy'/'make uninstall' (they use sudo -n), or prefix it with sudo"
    fi
}

# Serialise deploys: two at once would race on the symlinks.
take_lock() {
    dry && return 0
    local lockdir=$CD_ROOT/run/lock
    mkdir -p "$lockdir"
    exec 9>"$lockdir/car-detector-deploy.lock"
    if ! flock -n 9; then
        die 1 "another deploy or uninstall of car-detector is running on $CD_HOST" \
            "wait for it to finish, then run this again"
    fi
}
