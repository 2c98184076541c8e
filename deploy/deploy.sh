#!/usr/bin/env bash
# Deploy car-detector to a Raspberry Pi over ssh. Runs on the workstation:
#
#   make deploy PI=user@host [DRY_RUN=1] [FORCE=1] [MODEL=artifacts/latest] [SSH_OPTS=...] [PI_ROOT=]
#
# 1. checks here: the model directory (manifest.json and the files it names), the default
#    config (parsed by edge.config), the unit file; then that the Pi answers over ssh; then,
#    for a site fine-tune (report.json with a `site` section), that it is not worse than the
#    model the Pi runs (deploy/site_gate.py; FORCE=1 ships it anyway);
# 2. builds the bundle in build/deploy: the project's wheel, the model, config, unit and
#    the on-Pi scripts;
# 3. sends it over ssh (a tar stream) into a temporary directory on the Pi and runs
#    deploy/install.sh there as root (sudo -n unless logged in as root), which checks the
#    Pi, installs beside the running version, preflights, switches and restarts - or rolls
#    back. See install.sh for the steps and its exit codes, which this script passes on.
#
# DRY_RUN=1 builds and copies nothing and changes nothing on the Pi: it runs the same checks
# (the site comparison too, with the same answer) and prints what a deploy would do
# (install.sh --plan, piped over ssh).
#
# Environment: PI (required), MODEL, SSH_OPTS (split on spaces), PI_ROOT (install under a
# prefix on the target; for tests), PYTHON (workstation interpreter with the project's build
# tools; default .venv/bin/python), WHEEL (ship this prebuilt wheel instead of building one),
# CONFIG (ship this file as the default config instead of firmware_config/config.toml; an
# edited config on the Pi is still never overwritten), and any CAR_DETECTOR_* variable,
# which is forwarded to install.sh on the Pi.
#
# Exit codes (besides install.sh's): 2 bad local input, 7 the Pi cannot be reached, 8 refused:
# a site fine-tune that is worse than the installed model, or whose report cannot say.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=deploy/lib.sh
. "$HERE/lib.sh"
cd "$REPO"

STAGE=build/deploy
CONFIG_SRC=${CONFIG:-firmware_config/config.toml}   # the default config to ship
UNIT_SRC=firmware_config/car-detector.service

# Copy manifest.json and exactly the files it names (every "file" key: the models and the
# golden frames) into DEST; a training run directory holds much more that the Pi never needs.
stage_model() {
    local src=$1 dest=$2
    "$PYTHON" - "$src" "$dest" <<'EOF'
import json, shutil, sys
from pathlib import Path, PurePosixPath

src, dest = Path(sys.argv[1]), Path(sys.argv[2])
hint = "run `make train` (it writes artifacts/latest) or point MODEL= at a directory written by it"

def fail(msg: str) -> None:
    print(f"ERROR: MODEL={sys.argv[1]}: {msg}\n  what to do: {hint}", file=sys.stderr)
    sys.exit(2)

if not src.is_dir():
    fail("is not a directory")
manifest = src / "manifest.json"
if not manifest.is_file():
    fail("has no manifest.json")
try:
    data = json.loads(manifest.read_text())
except (OSError, ValueError) as exc:
    fail(f"manifest.json is not valid JSON: {exc}")

files: dict[str, str] = {}

def walk(node, where: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else key
            if key == "file" and isinstance(value, str):
                files.setdefault(value, here)
            else:
                walk(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            walk(value, f"{where}[{i}]")

walk(data, "")
if not any(name.endswith(".tflite") for name in files):
    fail("manifest.json names no .tflite file (expected models.<precision>.file)")
for name, field in sorted(files.items()):
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or ".." in parts:
        fail(f"manifest.json field {field} = {name!r} must be a file name inside the model directory")
    if not (src / name).is_file():
        fail(f"manifest.json field {field} names {name}, which is missing from {src}")
dest.mkdir(parents=True)
for name in ["manifest.json", *sorted(files)]:
    (dest / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / name, dest / name)
print(", ".join(["manifest.json", *sorted(files)]))
EOF
}

check_local_config() {
    local out
    if ! out=$("$PYTHON" -c 'import sys
from edge.config import load_config
cfg = load_config(sys.argv[1])
print(cfg.source.kind)' "$CONFIG_SRC" 2>&1 </dev/null); then
        ws_die 2 "the default config $CONFIG_SRC does not load: ${out##*$'\n'}" \
            "fix $CONFIG_SRC (tests/firmware_config checks it), then deploy again"
    fi
    SOURCE_KIND=${out##*$'\n'}
    [[ -f $UNIT_SRC ]] || ws_die 2 "$UNIT_SRC is missing" "restore it from git"
}

build_wheel() {
    if [[ -n ${WHEEL:-} ]]; then
        cp "$WORK/wheel/"*.whl "$STAGE/"
        ws_say "    using prebuilt $WHEEL"
        return 0
    fi
    local iso=() out
    # Without network access pip's isolated build env cannot fetch setuptools; use the
    # local one when it has what the build needs.
    if "$PYTHON" -c 'import setuptools, wheel' >/dev/null 2>&1 </dev/null; then iso=(--no-build-isolation); fi
    # setuptools reuses build/lib between builds, so a deleted module would ship again.
    rm -rf build/lib build/bdist.*
    ws_say "    + $PYTHON -m pip wheel --no-deps ${iso[*]} -w $STAGE ."
    if ! out=$(SOURCE_DATE_EPOCH=315532800 "$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps \
        "${iso[@]}" -w "$STAGE" . 2>&1 </dev/null); then
        printf '%s\n' "$out" >&2
        ws_die 2 "building the wheel of this checkout failed (pip output above)" \
            "fix the packaging error, or check that PYTHON=$PYTHON is the project's venv with pip"
    fi
}

stage_bundle() {
    ws_step "Build the bundle in $STAGE"
    rm -rf "$STAGE"
    mkdir -p "$STAGE"
    build_wheel
    cp -R "$WORK/model" "$STAGE/model"
    cp "$CONFIG_SRC" "$STAGE/config.toml"
    cp "$UNIT_SRC" "$STAGE/car-detector.service"
    cp "$HERE/install.sh" "$HERE/pi-lib.sh" "$STAGE/"
}

# A site fine-tune ships only over a model its report compared it with, and only when it is
# not worse there; site_gate.py decides (its docstring has the rule), from the manifest the Pi
# prints. A model without a `site` section costs no extra round trip.
check_site() {
    local kind installed rc=0 force=()
    kind=$("$PYTHON" "$HERE/site_gate.py" "$MODEL" </dev/null) || exit 2
    [[ $kind == site ]] || return 0
    ws_step "Compare the site fine-tune with the model $PI runs"
    installed=$({ cat "$HERE/pi-lib.sh"; printf '\nprint_installed_manifest\n'; } |
        "${SSH[@]}" "$PI" "$(remote_root_cmd bash -s)") || rc=$?
    case $rc in
        0) ;;
        3) exit 3 ;; # not root and no passwordless sudo: the Pi said so above
        *) ws_die 1 "could not read the installed model's manifest.json on $PI (ssh exit $rc, see above)" \
            "check that 'ssh $PI' works, then deploy again" ;;
    esac
    ws_is_true "${FORCE:-}" && force=(--force)
    "$PYTHON" "$HERE/site_gate.py" "$MODEL" --installed - --pi "$PI" "${force[@]}" \
        --command "make deploy PI=$PI MODEL=$MODEL" <<<"$installed" || rc=$?
    ((rc == 0)) || exit "$rc"
}

# DRY_RUN: everything install.sh needs to plan, computed here without building anything.
plan_ids() {
    ws_step "Build (dry run: nothing is built)"
    ws_say "    would run: $PYTHON -m pip wheel --no-deps -w $STAGE ."
    ws_say "    would stage $MODEL (manifest.json and the files it names), $CONFIG_SRC, $UNIT_SRC into $STAGE"
    CD_MODEL_ID=$(ws_tree_id "$WORK/model")
    CD_CONFIG_SHA=$(sha256sum "$CONFIG_SRC" | cut -d' ' -f1)
    CD_UNIT_SHA=$(sha256sum "$UNIT_SRC" | cut -d' ' -f1)
    CD_SOURCE_KIND=$SOURCE_KIND
    CD_WHEEL_NAME="car_detector-*.whl"
    export CD_MODEL_ID CD_CONFIG_SHA CD_UNIT_SHA CD_SOURCE_KIND CD_WHEEL_NAME
    if [[ -n ${WHEEL:-} ]]; then
        CD_WHEEL_NAME=$(basename "$WHEEL")
        CD_WHEEL_DIGEST=$("$PYTHON" -c 'import hashlib, sys, zipfile
h = hashlib.sha256()
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in sorted(z.namelist()):
        h.update(name.encode() + b"\0" + hashlib.sha256(z.read(name)).digest())
print(h.hexdigest())' "$WHEEL")
        export CD_WHEEL_DIGEST
    fi
}

dry_run() {
    plan_ids
    ws_step "Plan on $PI (dry run: install.sh --plan, nothing copied)"
    local rc=0
    cat "$HERE/pi-lib.sh" "$HERE/install.sh" | "${SSH[@]}" "$PI" "$(remote_root_cmd bash -s -- --plan)" || rc=$?
    exit "$rc"
}

send_and_install() {
    ws_step "Copy the bundle to $PI"
    local remote_dir rc=0
    # shellcheck disable=SC2016 # $d is the Pi's variable
    if ! remote_dir=$(tar -C "$STAGE" -czf - . |
        "${SSH[@]}" "$PI" 'd=$(mktemp -d /tmp/car-detector-deploy.XXXXXX) && tar -xzf - -C "$d" && echo "$d"'); then
        ws_die 1 "copying the bundle to $PI failed (see above)" "check free space in /tmp on the Pi (df -h /tmp) and the connection, then deploy again"
    fi
    ws_say "    $PI:$remote_dir"
    ws_step "Install on $PI"
    "${SSH[@]}" "$PI" "$(remote_root_cmd bash "$remote_dir/install.sh" "$remote_dir")" </dev/null || rc=$?
    "${SSH[@]}" "$PI" "rm -rf $(sq "$remote_dir")" </dev/null >/dev/null 2>&1 || true
    case $rc in
        0) ws_say "deploy to $PI: done" ;;
        255) ws_die 255 "lost the ssh connection to $PI during the install" \
            "make deploy PI=$PI DRY_RUN=1 shows what state the Pi is in; deploying again is safe" ;;
        *) printf 'deploy to %s failed (exit %s); the messages above say what happened on the Pi\n' "$PI" "$rc" >&2 ;;
    esac
    exit "$rc"
}

# The checks here, then the model staged in $WORK/model (and WHEEL copied aside).
local_checks() {
    MODEL=${MODEL:-artifacts/latest}
    ws_step "Local checks"
    check_local_config
    ws_say "    config $CONFIG_SRC loads (source.kind = $SOURCE_KIND); unit $UNIT_SRC"
    WORK=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now
    trap "rm -rf '$WORK'" EXIT
    local names
    names=$(stage_model "$MODEL" "$WORK/model") || exit 2
    ws_say "    model $MODEL: $names"
    if [[ -n ${WHEEL:-} ]]; then
        # Copied aside now: WHEEL may well point into build/deploy, which the build empties.
        [[ -f $WHEEL && $WHEEL == *.whl ]] || ws_die 2 "WHEEL=$WHEEL is not a .whl file" "unset WHEEL to build one from this checkout"
        mkdir "$WORK/wheel"
        cp "$WHEEL" "$WORK/wheel/"
    fi
}

# deploy.sh --stage-only PLAN_FILE (deploy/fleet/deploy-fleet.sh): the same checks and bundle,
# sent by Ansible to many Pis instead of by ssh to one. With DRY_RUN=1 nothing is built and
# the ids install.sh --plan needs are written to PLAN_FILE (NAME=VALUE lines) instead.
stage_only() {
    local plan_file=${1:?usage: deploy.sh --stage-only PLAN_FILE}
    ws_default_python
    local_checks
    if ws_is_true "${DRY_RUN:-}"; then
        plan_ids
        local name
        for name in CD_MODEL_ID CD_CONFIG_SHA CD_UNIT_SHA CD_SOURCE_KIND CD_WHEEL_NAME CD_WHEEL_DIGEST; do
            if [[ -n ${!name:-} ]]; then printf '%s=%s\n' "$name" "${!name}"; fi
        done >"$plan_file"
    else
        stage_bundle
    fi
    exit 0
}

main() {
    if [[ ${1:-} == --stage-only ]]; then stage_only "${2:-}"; fi
    ws_load_env deploy
    local_checks
    ws_step "Reach $PI"
    ws_probe_ssh
    ws_say "    ssh ok"
    check_site
    if ws_is_true "${DRY_RUN:-}"; then
        dry_run
    fi
    stage_bundle
    send_and_install
}

main "$@"
