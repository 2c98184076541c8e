#!/usr/bin/env bash
# Install or update car-detector ON THE PI from a bundle made by deploy.sh.
#
#   install.sh BUNDLE_DIR    install/update (root, or any user when PI_ROOT is set)
#   install.sh --plan        dry run without a bundle (deploy.sh DRY_RUN=1): all checks, then
#                            what a deploy would do; the bundle's ids come from CD_* env vars
#
# What it does, in order; nothing live changes before step 4:
#   1. checks: OS, Python, architecture, disk space, camera. A failure here changes nothing.
#   2. decides: model / venv / unit / config changed?  Nothing changed: "already installed".
#   3. prepares beside the running version: service user and directories, the model in
#      /var/lib/car-detector/model/<id>/, a venv in /opt/car-detector/venvs/<id>/, then runs
#      the new venv's `car-detector preflight` against the new model and loads the config.
#   4. commits: config and unit files, then atomic symlink switches (model/current,
#      /opt/car-detector/venv), daemon-reload, enable, restart, and checks the service stays
#      active. If it does not, everything in 4 is put back as it was ("rolled back").
#
# The bundle: car_detector-*.whl, model/ (manifest.json + files), config.toml,
# car-detector.service, install.sh, pi-lib.sh.
#
# Exit codes: 0 ok or already installed; 1 other failure; 2 bad bundle/arguments; 3 not
# root; 4 failed and rolled back (or nothing to roll back to); 5 failed and the rollback
# failed too; 6 a check failed (unsupported OS/arch/Python, disk, camera).
#
# Extra environment (see pi-lib.sh for the rest):
#   CAR_DETECTOR_PIP_ARGS   extra pip arguments, e.g. "--no-index --find-links /srv/wheels"
#                           for an offline Pi (the tests use this with a local wheelhouse).
#   CAR_DETECTOR_SETTLE_S   seconds the service must stay active after the restart (5).
set -euo pipefail

if [[ -z ${PI_LIB_LOADED:-} ]]; then
    # shellcheck source=deploy/pi-lib.sh
    . "$(dirname "${BASH_SOURCE[0]}")/pi-lib.sh"
fi

# ------------------------------------------------------------------------------ checks

check_os() {
    local os
    os=$(uname -s)
    [[ $os == Linux ]] || die 6 "unsupported operating system: $os" \
        "car-detector runs on Raspberry Pi OS (Debian Bookworm or Trixie)"
    local info="" id="" like="" pretty="unknown Linux"
    if [[ -r /etc/os-release ]]; then
        info=$(. /etc/os-release && printf '%s|%s|%s' "${ID:-}" "${ID_LIKE:-}" "${PRETTY_NAME:-}")
        IFS='|' read -r id like pretty <<<"$info"
    fi
    case " $id $like " in
        *" debian "* | *" raspbian "*) ;;
        *) die 6 "unsupported OS: $pretty (/etc/os-release ID=$id)" \
            "use Raspberry Pi OS Bookworm or Trixie (or another Debian): the install relies on Debian's python3-venv and python3-picamera2" ;;
    esac
    command -v systemctl >/dev/null 2>&1 || die 6 "systemctl not found: this system does not run systemd" \
        "car-detector is installed as a systemd service; use Raspberry Pi OS, which has systemd"
    say "OS: $pretty"
}

check_python() {
    PY=${CAR_DETECTOR_PYTHON:-python3}
    if ! command -v "$PY" >/dev/null 2>&1; then
        die 6 "no Python interpreter '$PY' on $CD_HOST" "sudo apt install -y python3 python3-venv"
    fi
    PY=$(command -v "$PY")
    PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' </dev/null)
    local minor=${PYVER#*.}
    if [[ ${PYVER%%.*} -ne 3 || $minor -lt 10 ]]; then
        die 6 "Python $PYVER ($PY) is too old; car-detector needs Python 3.10 or newer" \
            "use Raspberry Pi OS Bookworm (Python 3.11) or Trixie (Python 3.13)"
    fi
    if ! "$PY" -c 'import venv, ensurepip' </dev/null >/dev/null 2>&1; then
        die 6 "Python $PYVER at $PY cannot create virtual environments (venv/ensurepip missing)" \
            "sudo apt install -y python3-venv"
    fi
    # The inference runtime: tflite-runtime's last release (2.14) has wheels up to Python
    # 3.11 and breaks under NumPy 2; ai-edge-litert starts at 3.9 but has no armv7l wheels.
    if [[ $minor -lt 12 ]]; then
        PY_EXTRA=edge
        PY_REQS=("tflite-runtime==2.14.0" "numpy<2")
    else
        PY_EXTRA=litert
        PY_REQS=("ai-edge-litert")
    fi
    say "Python: $PYVER ($PY) -> runtime ${PY_REQS[0]}, extra [$PY_EXTRA]"
}

check_arch() {
    ARCH=$(uname -m)
    case $ARCH in
        aarch64 | arm64) ;;
        armv7l)
            if [[ $PY_EXTRA == litert ]]; then
                die 6 "32-bit Raspberry Pi OS (armv7l) with Python $PYVER has no inference runtime: ai-edge-litert publishes no armv7l wheels and tflite-runtime none for Python 3.12+" \
                    "flash the 64-bit Raspberry Pi OS (every Pi from the 3 and Zero 2 W on runs it)"
            fi
            warn "32-bit OS (armv7l): tflite-runtime must come from piwheels (Raspberry Pi OS's default pip index); 64-bit Raspberry Pi OS is faster and better supported"
            ;;
        *)
            if is_true "${CAR_DETECTOR_ALLOW_ANY_ARCH:-}"; then
                warn "architecture $ARCH is not a Raspberry Pi; continuing because CAR_DETECTOR_ALLOW_ANY_ARCH=1"
            else
                die 6 "unsupported architecture $ARCH: car-detector targets a Raspberry Pi (aarch64 on 64-bit Raspberry Pi OS, or armv7l on 32-bit)" \
                    "deploy to a Raspberry Pi; to install on another machine anyway (e.g. for testing) set CAR_DETECTOR_ALLOW_ANY_ARCH=1"
            fi
            ;;
    esac
    say "architecture: $ARCH"
}

# Free space where the venv and the model go; a full SD card is the classic half-finished
# install, so this is checked before anything is written.
check_disk() {
    local need_mb=${CAR_DETECTOR_MIN_FREE_MB:-300} p free_kb mount free_mb
    for p in "$CD_OPT" "$CD_VAR"; do
        while [[ ! -e $p ]]; do p=$(dirname "$p"); done
        read -r free_kb mount < <(df -Pk "$p" </dev/null | awk 'NR==2 {print $4, $6}')
        free_mb=$((free_kb / 1024))
        if ((free_mb < need_mb)); then
            die 6 "only $free_mb MB free on $mount (where $p is); a deploy needs at least $need_mb MB (a new venv with NumPy and the runtime takes 150-250 MB)" \
                "free space on $CD_HOST: sudo apt clean; sudo journalctl --vacuum-size=50M; delete old captures in /var/lib/car-detector/capture; or use a larger SD card"
        fi
    done
    say "disk: $free_mb MB free on $mount (need $need_mb MB)"
}

# source.kind of a config file; the dataclass default when the key is absent.
config_source_kind() {
    "$PY" - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
try:
    import tomllib
    try:
        print(tomllib.loads(text).get("source", {}).get("kind", "picamera2"))
    except tomllib.TOMLDecodeError:
        print("picamera2")
except ImportError:  # Python 3.10: good enough for one string key
    m = re.search(r'^\[source\][^\[]*?^\s*kind\s*=\s*"([^"]*)"', text, re.M | re.S)
    print(m.group(1) if m else "picamera2")
EOF
}

# What list_cameras will ask: rpicam-hello (Bookworm+), libcamera-hello (Bullseye), or
# picamera2 itself when neither app is installed.
camera_probe() {
    local tool
    for tool in rpicam-hello libcamera-hello; do
        if command -v "$tool" >/dev/null 2>&1; then
            echo "$tool"
            return 0
        fi
    done
    echo picamera2
}

# Cameras libcamera can see, one per line ("imx708 ..."); empty when none.
list_cameras() {
    local probe=$1 out
    if [[ $probe != picamera2 ]]; then
        out=$(timeout 30 "$probe" --list-cameras 2>&1 </dev/null) || true
        grep -E '^[[:space:]]*[0-9]+ : ' <<<"$out" | sed -E 's/^[[:space:]]*[0-9]+ : //' || true
        return 0
    fi
    "$PY" -c '
import sys
try:
    from picamera2 import Picamera2
except Exception as exc:
    sys.exit(0)
for cam in Picamera2.global_camera_info():
    print(cam.get("Model", "camera"), cam.get("Id", ""))
' </dev/null 2>/dev/null || true
}

check_camera() {
    local kind=$1 cams
    if is_true "${CAR_DETECTOR_SKIP_CAMERA_CHECK:-}"; then
        say "camera: check skipped (CAR_DETECTOR_SKIP_CAMERA_CHECK=1)"
        return 0
    fi
    if service_active; then
        # libcamera does not list a camera another process holds; the running daemon does.
        say "camera: car-detector is running and holds the camera; not probing it"
        return 0
    fi
    local probe how
    probe=$(camera_probe)
    how="$probe --list-cameras"
    [[ $probe == picamera2 ]] && how="picamera2's Picamera2.global_camera_info()"
    cams=$(list_cameras "$probe")
    if [[ -n $cams ]]; then
        say "camera: $(head -n1 <<<"$cams") (found by $how)"
        return 0
    fi
    if [[ $kind == picamera2 ]]; then
        die 6 "no camera detected ($how lists none) but source.kind = \"picamera2\"" \
            "check the ribbon cable (both ends latched, contacts the right way round) and /boot/firmware/config.txt (camera_auto_detect=1 or your sensor's dtoverlay, see firmware_config/config.txt), reboot, and check with: rpicam-hello --list-cameras. To deploy without a camera: CAR_DETECTOR_SKIP_CAMERA_CHECK=1 make deploy ..."
    fi
    warn "no camera detected ($how lists none); fine because source.kind = \"$kind\""
}

# ------------------------------------------------------------------------------ ids

wheel_digest() {
    "$PY" - "$1" <<'EOF'
import hashlib, sys, zipfile
# Content, not file bytes: zip timestamps differ between two builds of the same source.
h = hashlib.sha256()
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in sorted(z.namelist()):
        h.update(name.encode() + b"\0" + hashlib.sha256(z.read(name)).digest())
print(h.hexdigest())
EOF
}

compute_ids() {
    if [[ $MODE == plan ]]; then
        MODEL_ID=${CD_MODEL_ID:?deploy.sh passes CD_MODEL_ID in a dry run}
        NEW_CONFIG_SHA=${CD_CONFIG_SHA:?}
        NEW_UNIT_SHA=${CD_UNIT_SHA:?}
        NEW_SOURCE_KIND=${CD_SOURCE_KIND:-picamera2}
        WHEEL_NAME=${CD_WHEEL_NAME:-car_detector-*.whl}
        WHEEL="<bundle>/$WHEEL_NAME"   # only printed: a plan has no bundle
        VENV_ID=""   # unknown unless deploy.sh was given a prebuilt wheel (WHEEL=)
        if [[ -n ${CD_WHEEL_DIGEST:-} ]]; then
            VENV_ID=$(venv_id "$CD_WHEEL_DIGEST")
        fi
        return 0
    fi
    local wheels=("$BUNDLE"/*.whl)
    [[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] || die 2 "bundle $BUNDLE must hold exactly one .whl (has ${#wheels[@]})" \
        "re-run make deploy; it rebuilds the bundle"
    WHEEL=${wheels[0]}
    WHEEL_NAME=$(basename "$WHEEL")
    local f
    for f in model/manifest.json config.toml "$CD_UNIT"; do
        [[ -f $BUNDLE/$f ]] || die 2 "bundle $BUNDLE is missing $f" "re-run make deploy; it rebuilds the bundle"
    done
    MODEL_ID=$(tree_id "$BUNDLE/model")
    NEW_CONFIG_SHA=$(sha256_of "$BUNDLE/config.toml")
    NEW_UNIT_SHA=$(sha256_of "$BUNDLE/$CD_UNIT")
    NEW_SOURCE_KIND=$(config_source_kind "$BUNDLE/config.toml")
    # One venv per (wheel content, Python, runtime requirements): a code change or an OS
    # Python upgrade gets a fresh venv beside the running one, which is what makes the
    # venv rollback a symlink flip.
    VENV_ID=$(venv_id "$(wheel_digest "$WHEEL")")
}

venv_id() {
    printf '%s|%s|%s|%s' "$1" "$PYVER" "$PY_EXTRA" "${PY_REQS[*]}" | sha256sum | cut -c1-12
}

# ------------------------------------------------------------------------------ decisions

read_installed_state() {
    REC_MODEL_ID="" REC_VENV_ID=""
    [[ -f $CD_STATE_FILE ]] || return 0
    local k v
    while IFS='=' read -r k v; do
        case $k in
            MODEL_ID) REC_MODEL_ID=$v ;;
            VENV_ID) REC_VENV_ID=$v ;;
        esac
    done <"$CD_STATE_FILE"
}

# The config rule: never overwrite a file the user edited. "Edited" means it differs from
# the default we shipped last time (kept in /opt/car-detector/config.default.toml).
decide_config() {
    local live_sha shipped_sha="" new_file_sha=""
    [[ -f $CD_SHIPPED_CONFIG ]] && shipped_sha=$(sha256_of "$CD_SHIPPED_CONFIG")
    if [[ ! -f $CD_CONFIG ]]; then
        CONFIG_ACTION=install
        return
    fi
    live_sha=$(sha256_of "$CD_CONFIG")
    if [[ $live_sha == "$NEW_CONFIG_SHA" ]]; then
        CONFIG_ACTION=unchanged
    elif [[ -n $shipped_sha && $live_sha == "$shipped_sha" ]]; then
        CONFIG_ACTION=update
    else
        [[ -f $CD_CONFIG.new ]] && new_file_sha=$(sha256_of "$CD_CONFIG.new")
        if [[ $shipped_sha != "$NEW_CONFIG_SHA" && $new_file_sha != "$NEW_CONFIG_SHA" ]]; then
            CONFIG_ACTION=keep-write-new
        else
            CONFIG_ACTION=keep
        fi
    fi
}

decide() {
    read_installed_state
    CUR_MODEL=$(link_target_name "$CD_MODEL_LINK")
    CUR_VENV=$(link_target_name "$CD_VENV_LINK")
    decide_config
    if [[ ! -f $CD_UNIT_FILE ]]; then
        UNIT_ACTION=install
    elif [[ $(sha256_of "$CD_UNIT_FILE") == "$NEW_UNIT_SHA" ]]; then
        UNIT_ACTION=unchanged
    else
        UNIT_ACTION=update
    fi
    # The config the daemon will run with decides whether a missing camera is fatal.
    case $CONFIG_ACTION in
        keep | keep-write-new) EFFECTIVE_KIND=$(config_source_kind "$CD_CONFIG") ;;
        *) EFFECTIVE_KIND=$NEW_SOURCE_KIND ;;
    esac
    NOTHING_TO_DO=0
    if [[ $MODEL_ID == "$CUR_MODEL" && $MODEL_ID == "$REC_MODEL_ID" &&
        -n $VENV_ID && $VENV_ID == "$CUR_VENV" && $VENV_ID == "$REC_VENV_ID" &&
        $UNIT_ACTION == unchanged ]]; then
        case $CONFIG_ACTION in
            unchanged | keep | keep-write-new)
                # A config the user edited after the last deploy reached the daemon through
                # their own `systemctl reload`; it is theirs, not a reason to restart.
                NOTHING_TO_DO=1
                ;;
        esac
    fi
}

print_plan() {
    step "Plan for $CD_HOST${CD_ROOT:+ (under PI_ROOT=$CD_ROOT)}"
    if [[ $MODEL_ID == "$CUR_MODEL" ]]; then
        say "model:  $MODEL_ID is already current"
    else
        say "model:  ${CUR_MODEL:-none} -> $MODEL_ID"
    fi
    if [[ -z $VENV_ID ]]; then
        say "venv:   current ${CUR_VENV:-none}; the wheel is not built in a dry run: a venv is built only if $WHEEL_NAME differs from the installed one"
    elif [[ $VENV_ID == "$CUR_VENV" ]]; then
        say "venv:   $VENV_ID ($WHEEL_NAME) is already current"
    else
        say "venv:   ${CUR_VENV:-none} -> $VENV_ID ($WHEEL_NAME, Python $PYVER, ${PY_REQS[*]})"
    fi
    say "unit:   $UNIT_ACTION ($CD_UNIT_FILE)"
    case $CONFIG_ACTION in
        install) say "config: install the default as $CD_CONFIG" ;;
        unchanged) say "config: $CD_CONFIG is already the shipped default" ;;
        update) say "config: $CD_CONFIG was not edited; replace it with the new default" ;;
        keep) say "config: keep your edited $CD_CONFIG" ;;
        keep-write-new) say "config: keep your edited $CD_CONFIG; write the new default beside it as config.toml.new" ;;
    esac
}

# ------------------------------------------------------------------------------ prepare

ensure_user_and_dirs() {
    step "Service user and directories"
    if under_prefix; then
        say "    (PI_ROOT set: not creating the system user; a real install runs: useradd --system --user-group --home-dir /var/lib/car-detector --no-create-home --shell /usr/sbin/nologin $CD_USER; usermod -a -G video $CD_USER)"
    elif ! getent passwd "$CD_USER" >/dev/null; then
        act useradd --system --user-group --home-dir /var/lib/car-detector --no-create-home \
            --shell /usr/sbin/nologin --comment "car detector daemon" "$CD_USER"
        if getent group video >/dev/null; then act usermod -a -G video "$CD_USER"; fi
    else
        say "    user $CD_USER exists"
    fi
    act mkdir -p "$CD_VENVS" "$CD_ETC" "$CD_MODELS" "$CD_CAPTURE" "$CD_UNIT_DIR"
    act chmod 0750 "$CD_VAR" "$CD_CAPTURE"
    own "$CD_USER:$CD_USER" "$CD_VAR" "$CD_CAPTURE"
}

prepare_model() {
    NEW_MODEL_DIR=$CD_MODELS/$MODEL_ID
    CREATED_MODEL=0
    step "Model $MODEL_ID"
    if [[ -d $NEW_MODEL_DIR ]] && [[ $(tree_id "$NEW_MODEL_DIR") == "$MODEL_ID" ]]; then
        say "    already on disk: $NEW_MODEL_DIR"
        return 0
    fi
    local incoming=$CD_MODELS/.incoming-$MODEL_ID
    act rm -rf "$incoming"
    act cp -R "$BUNDLE/model" "$incoming"
    act chmod -R u=rwX,go=rX "$incoming"
    if ! dry && [[ $(tree_id "$incoming") != "$MODEL_ID" ]]; then
        rm -rf "$incoming"
        die 1 "the model copied to $incoming does not match the bundle (id $MODEL_ID)" \
            "check the SD card for errors (dmesg) and run make deploy again"
    fi
    if [[ -e $NEW_MODEL_DIR ]]; then act rm -rf "$NEW_MODEL_DIR"; fi
    act mv -T "$incoming" "$NEW_MODEL_DIR"
    CREATED_MODEL=1
}

prepare_venv() {
    if [[ -z $VENV_ID ]]; then
        step "Venv"
        say "    would build a venv for $WHEEL_NAME (Python $PYVER, ${PY_REQS[*]}, extra [$PY_EXTRA]) in $CD_VENVS/<id> unless that wheel is installed already"
        NEW_VENV_DIR=$CD_VENVS/"<id>"
        return 0
    fi
    NEW_VENV_DIR=$CD_VENVS/$VENV_ID
    step "Venv $VENV_ID ($WHEEL_NAME)"
    if [[ -f $NEW_VENV_DIR/.complete ]]; then
        say "    already built: $NEW_VENV_DIR"
        return 0
    fi
    local pip_args=()
    read -r -a pip_args <<<"${CAR_DETECTOR_PIP_ARGS:-}"
    # Built in place (a venv's scripts hard-code its path); .complete marks a finished one.
    act rm -rf "$NEW_VENV_DIR"
    # --system-site-packages: picamera2 and libcamera's Python bindings only exist as apt
    # packages (python3-picamera2), built against the system's libcamera.
    act "$PY" -m venv --system-site-packages "$NEW_VENV_DIR"
    act mkdir -p "$NEW_VENV_DIR/wheel"
    act cp "$WHEEL" "$NEW_VENV_DIR/wheel/"
    if ! act "$NEW_VENV_DIR/bin/python" -m pip install --disable-pip-version-check --no-input \
        --prefer-binary "${pip_args[@]}" "${PY_REQS[@]}" "$NEW_VENV_DIR/wheel/${WHEEL_NAME}[${PY_EXTRA}]" </dev/null; then
        act rm -rf "$NEW_VENV_DIR"
        die 1 "pip could not install $WHEEL_NAME with ${PY_REQS[*]} into a new venv (output above); nothing was switched: the service still runs model ${CUR_MODEL:-none}, venv ${CUR_VENV:-none}" \
            "check the Pi's network (pip downloads from PyPI/piwheels) or pass a wheelhouse: CAR_DETECTOR_PIP_ARGS='--no-index --find-links DIR'"
    fi
    dry || printf '%s\n%s\n' "$WHEEL_NAME" "${PY_REQS[*]}" >"$NEW_VENV_DIR/.complete"
}

# The new code must accept the config it will run with, and the new model must pass the
# new code's preflight, before anything live is touched.
verify_new_version() {
    step "Preflight: new venv against new model"
    local out
    if [[ $EFFECTIVE_KIND == picamera2 ]] && ! is_true "${CAR_DETECTOR_SKIP_CAMERA_CHECK:-}"; then
        if dry; then
            say "    would check that picamera2 imports in the venv"
        elif ! out=$("$NEW_VENV_DIR/bin/python" -c 'import picamera2' 2>&1 </dev/null); then
            fail_before_switch "picamera2 does not import in the new venv: ${out##*$'\n'}" \
                "sudo apt install -y python3-picamera2 --no-install-recommends, then make deploy again"
        fi
    fi
    local cfg=$CD_CONFIG
    case $CONFIG_ACTION in install | update | unchanged) cfg=$BUNDLE/config.toml ;; esac
    if dry; then
        say "    would run: $NEW_VENV_DIR/bin/python -c 'load_config($cfg)'"
    elif ! out=$("$NEW_VENV_DIR/bin/python" -c 'import sys
from edge.config import load_config
load_config(sys.argv[1])' "$cfg" 2>&1 </dev/null); then
        fail_before_switch "the config the service would run with is rejected by the new version: ${out##*$'\n'}" \
            "fix $cfg (compare with $CD_CONFIG.new or firmware_config/config.toml), then make deploy again"
    else
        say "    config ok: $cfg"
    fi
    if dry; then
        say "    would run: $NEW_VENV_DIR/bin/car-detector preflight --model $NEW_MODEL_DIR"
        return 0
    fi
    say "    + $NEW_VENV_DIR/bin/car-detector preflight --model $NEW_MODEL_DIR"
    if ! out=$("$NEW_VENV_DIR/bin/car-detector" preflight --model "$NEW_MODEL_DIR" 2>&1 </dev/null); then
        printf '%s\n' "$out" | sed 's/^/    | /' >&2
        fail_before_switch "preflight failed for model $MODEL_ID: ${out##*$'\n'}" \
            "the model files do not match their manifest or do not run here: retrain or re-export (make train), then make deploy again"
    fi
    printf '%s\n' "$out" | tail -n 5 | sed 's/^/    | /'
}

# Before the switch, "rolling back" is only discarding what this run added.
fail_before_switch() {
    local what=$1 todo=$2
    if [[ ${CREATED_MODEL:-0} == 1 && $NEW_MODEL_DIR != "$CD_MODELS/$CUR_MODEL" ]]; then
        rm -rf "$NEW_MODEL_DIR"
    fi
    printf 'ERROR on %s: %s\n' "$CD_HOST" "$what" >&2
    printf 'Rolled back: nothing was switched; the current model stays %s and the venv %s, the service was not touched.\n' \
        "${CUR_MODEL:-none (not installed yet)}" "${CUR_VENV:-none}" >&2
    printf '  what to do: %s\n' "$todo" >&2
    exit 4
}

# ------------------------------------------------------------------------------ commit

backup_live_files() {
    BACKUP_DIR=$CD_OPT/rollback
    rm -rf "$BACKUP_DIR"
    mkdir -p "$BACKUP_DIR"
    [[ -f $CD_UNIT_FILE ]] && cp -p "$CD_UNIT_FILE" "$BACKUP_DIR/unit"
    [[ -f $CD_CONFIG ]] && cp -p "$CD_CONFIG" "$BACKUP_DIR/config.toml"
    return 0
}

install_config() {
    case $CONFIG_ACTION in
        install | update)
            step "Config: ${CONFIG_ACTION/update/replace the unedited default with the new default}"
            place_file "$BUNDLE/config.toml" "$CD_CONFIG" 0640 || return 1
            own "root:$CD_USER" "$CD_CONFIG" || return 1
            ;;
        keep-write-new)
            step "Config: keeping your edited $CD_CONFIG"
            place_file "$BUNDLE/config.toml" "$CD_CONFIG.new" 0640 || return 1
            own "root:$CD_USER" "$CD_CONFIG.new" || return 1
            say "    NOTE: the default config changed in this release; it is at $CD_CONFIG.new - merge what you need into your config.toml"
            ;;
        keep) say "==> Config: keeping your edited $CD_CONFIG" ;;
        unchanged) say "==> Config: unchanged" ;;
    esac
}

install_unit() {
    [[ $UNIT_ACTION == unchanged ]] && return 0
    step "Unit: $UNIT_ACTION $CD_UNIT_FILE"
    place_file "$BUNDLE/$CD_UNIT" "$CD_UNIT_FILE" 0644
}

# Exit status of the restart, then is-active for CAR_DETECTOR_SETTLE_S seconds: Type=notify
# makes `restart` wait for READY=1, the settle catches a crash right after it.
restart_and_verify() {
    local settle=${CAR_DETECTOR_SETTLE_S:-5} waited=0 out state
    if ! out=$(systemctl_q restart "$CD_UNIT" 2>&1); then
        FAIL_REASON="systemctl restart $CD_UNIT failed: ${out:-no output}"
        return 1
    fi
    while :; do
        state=$(systemctl_q is-active "$CD_UNIT" 2>/dev/null || true)
        if [[ $state != active ]]; then
            FAIL_REASON="$CD_UNIT is not active after the restart (state: ${state:-unknown})"
            return 1
        fi
        ((waited >= settle)) && break
        sleep 1
        waited=$((waited + 1))
    done
    return 0
}

commit() {
    step "Switch to model $MODEL_ID, venv $VENV_ID"
    backup_live_files
    install_config || return 1
    install_unit || return 1
    switch_link "venvs/$VENV_ID" "$CD_VENV_LINK" || return 1
    switch_link "$MODEL_ID" "$CD_MODEL_LINK" || return 1
    step "Restart the service"
    act systemctl daemon-reload </dev/null || return 1
    act systemctl enable "$CD_UNIT" </dev/null || return 1
    say "    + systemctl restart $CD_UNIT"
    restart_and_verify
}

rollback() {
    local reason=$1 rc=4 rb_state
    set +e # put back as much as possible even if one step fails
    printf 'ERROR on %s: %s\n' "$CD_HOST" "$reason" >&2
    printf '    | %s\n' "journalctl -u $CD_NAME -n 30 shows why" >&2
    if [[ -z $CUR_MODEL || -z $CUR_VENV ]]; then
        act systemctl disable --now "$CD_UNIT" </dev/null || true
        printf 'Nothing to roll back to (first install): the service was stopped and disabled; files stay in place for inspection.\n' >&2
        printf '  what to do: journalctl -u %s -n 50, fix the cause, then make deploy again\n' "$CD_NAME" >&2
        exit 4
    fi
    step "Rolling back to model $CUR_MODEL, venv $CUR_VENV" >&2
    [[ -f $BACKUP_DIR/unit ]] && place_file "$BACKUP_DIR/unit" "$CD_UNIT_FILE" 0644
    [[ ! -f $BACKUP_DIR/unit ]] && rm -f "$CD_UNIT_FILE"
    if [[ -f $BACKUP_DIR/config.toml ]]; then
        place_file "$BACKUP_DIR/config.toml" "$CD_CONFIG" 0640
        own "root:$CD_USER" "$CD_CONFIG"
    fi
    switch_link "venvs/$CUR_VENV" "$CD_VENV_LINK"
    switch_link "$CUR_MODEL" "$CD_MODEL_LINK"
    act systemctl daemon-reload </dev/null || true
    FAIL_REASON=""
    if restart_and_verify; then
        rb_state="the service is active again on the previous version"
    else
        rb_state="but the service is still not active ($FAIL_REASON)"
        rc=5
    fi
    local kept=()
    [[ $MODEL_ID != "$CUR_MODEL" ]] && kept+=("model $CD_MODELS/$MODEL_ID")
    [[ $VENV_ID != "$CUR_VENV" ]] && kept+=("venv $CD_VENVS/$VENV_ID")
    printf 'Rolled back to the previous model %s and venv %s; %s.\n' "$CUR_MODEL" "$CUR_VENV" "$rb_state" >&2
    printf '  what to do: journalctl -u %s -n 50 says why the new version failed%s\n' "$CD_NAME" \
        "${kept:+; kept for inspection: ${kept[*]}}" >&2
    exit "$rc"
}

record_success() {
    local tmp=$CD_STATE_FILE.tmp
    {
        printf 'MODEL_ID=%s\nVENV_ID=%s\nUNIT_SHA=%s\n' "$MODEL_ID" "$VENV_ID" "$NEW_UNIT_SHA"
        printf 'LIVE_CONFIG_SHA=%s\nWHEEL=%s\nDEPLOYED_AT=%s\n' "$(sha256_of "$CD_CONFIG")" "$WHEEL_NAME" "$(date -u +%FT%TZ)"
    } >"$tmp"
    mv -f "$tmp" "$CD_STATE_FILE"
    install -m 0644 "$BUNDLE/config.toml" "$CD_SHIPPED_CONFIG"
    rm -rf "$CD_OPT/rollback"
}

# Keep the running version and the one before it (the rollback target); drop older ones.
prune() {
    local keep_model=$1 keep_venv=$2 d name
    for d in "$CD_MODELS"/* "$CD_VENVS"/*; do
        [[ -d $d && ! -L $d ]] || continue
        name=$(basename "$d")
        [[ $name =~ ^[0-9a-f]{12}$ ]] || continue
        case $d in
            "$CD_MODELS/$MODEL_ID" | "$CD_MODELS/$keep_model" | "$CD_VENVS/$VENV_ID" | "$CD_VENVS/$keep_venv") continue ;;
        esac
        say "    removing old version $d"
        rm -rf "$d"
    done
    rm -rf "$CD_MODELS"/.incoming-* # left by an interrupted copy
}

# ------------------------------------------------------------------------------ main

main() {
    MODE=install
    case ${1:-} in
        --plan) MODE=plan DRY_RUN=1 BUNDLE="<bundle>" ;;
        "" | -h | --help)
            sed -n '2,9p' "${BASH_SOURCE[0]}" 2>/dev/null || true
            die 2 "usage: install.sh BUNDLE_DIR | --plan" "run it through make deploy"
            ;;
        *) BUNDLE=$1 ;;
    esac
    cd_init_paths
    require_root "install.sh"
    if [[ $MODE == install ]]; then
        BUNDLE=$(cd "$BUNDLE" 2>/dev/null && pwd) || die 2 "bundle directory $1 not found" "run it through make deploy"
    fi
    take_lock
    step "Checks on $CD_HOST"
    check_os
    check_python
    check_arch
    check_disk
    compute_ids
    decide
    check_camera "$EFFECTIVE_KIND"
    print_plan

    if [[ $NOTHING_TO_DO == 1 ]]; then
        if [[ $CONFIG_ACTION == keep-write-new ]]; then install_config; fi
        say "already installed: model $MODEL_ID, venv $VENV_ID ($WHEEL_NAME), unit and config unchanged - nothing to do, no restart"
        exit 0
    fi

    ensure_user_and_dirs
    prepare_model
    prepare_venv
    verify_new_version
    if dry; then
        step "Switch (dry run)"
        say "    would install the config/unit as planned above, then: ln -s + mv -T for $CD_VENV_LINK and $CD_MODEL_LINK, systemctl daemon-reload, systemctl enable $CD_UNIT, systemctl restart $CD_UNIT, check it stays active; roll back on failure"
        say "dry run: nothing was changed on $CD_HOST"
        exit 0
    fi
    FAIL_REASON=""
    if ! commit; then
        rollback "${FAIL_REASON:-switching to the new version failed}"
    fi
    record_success
    step "Tidy up"
    prune "$CUR_MODEL" "$CUR_VENV"
    say "installed on $CD_HOST: model $MODEL_ID (was ${CUR_MODEL:-none}), venv $VENV_ID (was ${CUR_VENV:-none}); $CD_NAME is active"
    say "logs: journalctl -u $CD_NAME -f"
}

main "$@"
exit $?
