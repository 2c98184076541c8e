#!/usr/bin/env bash
# make pi-sim: prove that what `make deploy` installs runs on the Pi's architecture and
# Pythons, and that the int8 model's outputs there are bit-identical to x86.
#
# For each Raspberry Pi OS base (Bookworm: Python 3.11 + tflite-runtime 2.14 + numpy<2;
# Trixie: Python 3.13 + ai-edge-litert) it builds an arm64 Debian userland from Debian's
# archive (pisim/build_rootfs.sh), makes the deploy's venv in it (--system-site-packages,
# the runtime requirements + the project wheel with its extra, as deploy/install.sh does
# with CAR_DETECTOR_PIP_ARGS="--no-index --find-links WHEELHOUSE"), and under
# qemu-aarch64-static, once as a Pi 4 (Cortex-A72) and once as a Pi 5 (Cortex-A76):
#   1. runs the installed `car-detector preflight` (sha256, dtype/shape, golden frames),
#   2. scores PISIM_FRAMES frames of the highway clip, compared exactly with x86,
#   3. replays the same frames through the daemon (`python -m edge run --max-frames N`)
#      and compares its events with the x86 daemon's.
# Then it prints one table (also .pi-sim/report.json) with the MAC count and the Pi 4 /
# Pi 5 compute floors beside the x86 host's measured invoke time. Emulated runs are not
# timed. Exit 0 only if every target passed.
#
# No binfmt_misc is needed: each venv's python is a tiny shell script that execs
# `qemu-aarch64-static -L ROOT -0 <venv python> ROOT/usr/bin/python3.X`, so sys.executable,
# console scripts and subprocesses of the emulated Python all work from the x86 host.
#
# env: PYTHON (host venv python, default .venv/bin/python), MODEL (default artifacts/latest),
#      DATA_MIRROR (default ../shared/datasets), PISIM_FRAMES (default 24),
#      PISIM_BOARDS (default "pi4 pi5"), PISIM_SUITES (default "bookworm trixie"),
#      PISIM_WORK (default .pi-sim), PISIM_REPORT (default $PISIM_WORK/report.json),
#      PISIM_MIRROR (Debian mirror, default the host's), PISIM_OFFLINE=1 (never pip download;
#      the wheelhouses must already be there).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PYTHON=${PYTHON:-.venv/bin/python}
# Absolute, but not through the venv's symlink (that would leave the venv).
[[ -e $PYTHON ]] && PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
MODEL=${MODEL:-artifacts/latest}
WORK=$(realpath -m "${PISIM_WORK:-.pi-sim}")
FRAMES=${PISIM_FRAMES:-24}
BOARDS=${PISIM_BOARDS:-pi4 pi5}
SUITES=${PISIM_SUITES:-bookworm trixie}
REPORT=$(realpath -m "${PISIM_REPORT:-$WORK/report.json}")
VIDEO=$(realpath -m "${DATA_MIRROR:-../shared/datasets}/video/highway-320x240.avi")
COMPARE=$REPO/pisim/compare.py
T0=$SECONDS

say() { printf 'pi-sim [%3ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() {
    printf 'pi-sim: %s\n' "$1" >&2
    [[ -n ${2:-} ]] && printf '        fix: %s\n' "$2" >&2
    exit "${3:-1}"
}

# A suite is a Debian release plus what the deploy installs there (deploy/install.sh's
# table); bookworm-litert is the alternative of ai-edge-litert on Bookworm's Python 3.11.
suite_release() {
    case $1 in
        bookworm | bookworm-litert) echo bookworm ;;
        trixie) echo trixie ;;
        *) die "unknown suite '$1' in PISIM_SUITES" "use bookworm, trixie or bookworm-litert" ;;
    esac
}
release_python() { case $1 in bookworm) echo 3.11 ;; trixie) echo 3.13 ;; esac; }
release_glibc() { case $1 in bookworm) echo 36 ;; trixie) echo 41 ;; esac; }
suite_extra() { case $1 in bookworm) echo edge ;; *) echo litert ;; esac; }
suite_reqs() { case $1 in bookworm) echo "tflite-runtime==2.14.0 numpy<2" ;; *) echo "ai-edge-litert" ;; esac; }
# What the daemon runs there: `auto` picks ai-edge-litert wherever the deploy installs it (the
# [edge] extra brings it on 64-bit Bookworm too); tflite-runtime 2.14, which the deploy
# installs on Python 3.11 as the issue asks, is checked explicitly as a second target.
suite_runtimes() { case $1 in bookworm) echo "litert tflite-runtime" ;; *) echo litert ;; esac; }
target_label() { if [[ $3 == tflite-runtime ]]; then echo "$1-$2-tflite"; else echo "$1-$2"; fi; }

# ------------------------------------------------------------------ prerequisites ---

need_tools() {
    local missing=()
    command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
    command -v dpkg-deb >/dev/null || missing+=(dpkg)
    command -v apt-get >/dev/null || die "apt-get not found: pi-sim builds its arm64 roots from Debian's archive" \
        "run it on Debian/Ubuntu (the project's dev machines and CI are Debian 12)"
    if ((${#missing[@]})); then
        say "installing ${missing[*]} (apt)"
        [[ $(id -u) == 0 ]] || die "${missing[*]} missing and not root" "sudo apt-get install -y ${missing[*]}"
        apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q "${missing[@]}" >/dev/null
    fi
    [[ -x $PYTHON ]] || die "host Python $PYTHON not found" "make venv (or set PYTHON=path/to/venv/bin/python)"
    [[ -f $MODEL/manifest.json ]] || die "no model at $MODEL (manifest.json missing)" "make train, or MODEL=path/to/model/dir"
    [[ -f $VIDEO ]] || die "video $VIDEO not found" "put the shared datasets beside the repo or set DATA_MIRROR"
    MODEL=$(realpath "$MODEL")
}

# --------------------------------------------------------------- project wheel ---

# Built from a clean copy of the checkout (tracked + untracked-not-ignored files), so a
# stale build/ directory can never put deleted modules into the wheel.
build_project_wheel() {
    local src=$WORK/src out=$WORK/wheels/project
    rm -rf "$src" "$out"
    mkdir -p "$src" "$out"
    if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$REPO" ls-files -z --cached --others --exclude-standard \
            | (cd "$REPO" && while IFS= read -r -d '' f; do if [[ -f $f ]]; then printf '%s\0' "$f"; fi; done) \
            | tar --null -T - -cf - | tar -xf - -C "$src"
    else
        cp -a pyproject.toml edge training "$src/"
    fi
    local iso=()
    "$PYTHON" -c 'import setuptools, wheel' >/dev/null 2>&1 && iso=(--no-build-isolation)
    (cd "$src" && SOURCE_DATE_EPOCH=315532800 "$PYTHON" -m pip wheel -q --disable-pip-version-check \
        --no-deps "${iso[@]}" -w "$out" .) >"$WORK/logs/wheel.log" 2>&1 \
        || { cat "$WORK/logs/wheel.log" >&2; die "building the project wheel failed (output above)"; }
    WHEEL=$(ls "$out"/*.whl)
    WHEEL_DIGEST=$(sha256sum "$WHEEL" | cut -c1-16)
    say "project wheel $(basename "$WHEEL") ($WHEEL_DIGEST)"
}

# ------------------------------------------------------------- arm64 wheelhouse ---

manylinux_platforms() { # every manylinux tag a glibc-$1 arm64 system accepts
    local max=$1 i
    printf -- '--platform manylinux2014_aarch64 '
    for ((i = 17; i <= max; i++)); do printf -- '--platform manylinux_2_%s_aarch64 ' "$i"; done
}

# What pip on the Pi would download, fetched on the host (the arm64 side has no network
# in CI's sense and pip under qemu is slow). Re-downloaded only when the wheel's
# requirements change.
fill_wheelhouse() {
    local suite=$1 py=$2 glibc=$3
    local house=$WORK/wheels/$suite
    local reqs extra key
    reqs=$(suite_reqs "$suite")
    extra=$(suite_extra "$suite")
    key=$( ("$PYTHON" - "$WHEEL" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as whl:
    meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
    print("\n".join(l for l in whl.read(meta).decode().splitlines() if l.startswith("Requires-Dist")))
PY
        echo "$reqs $extra $py $glibc") | sha256sum | cut -c1-16)
    if [[ -f $house/.key && $(cat "$house/.key") == "$key" ]]; then
        cp "$WHEEL" "$house/"
        return 0
    fi
    [[ ${PISIM_OFFLINE:-} == 1 ]] && die "$suite wheelhouse $house is missing or stale and PISIM_OFFLINE=1" \
        "run once with network access to PyPI"
    rm -rf "$house"
    mkdir -p "$house"
    # shellcheck disable=SC2046,SC2086
    "$PYTHON" -m pip download -q --disable-pip-version-check -d "$house" --only-binary=:all: \
        $(manylinux_platforms "$glibc") --python-version "$py" --implementation cp \
        $reqs "$(basename "$WHEEL" .whl | cut -d- -f1)[$extra] @ file://$WHEEL" pip 2>&1 \
        | grep -v "^WARNING: Location" >&2 || true
    ls "$house"/pip-*.whl >/dev/null 2>&1 || die "pip download for $suite (Python $py, arm64) failed (output above)" \
        "check that PyPI is reachable; a requirement without an aarch64 wheel is named above"
    cp "$WHEEL" "$house/"
    echo "$key" >"$house/.key"
}

# -------------------------------------------------------------------- the venv ---

# An emulated venv's interpreter: runs on the x86 host, reports itself as the venv's python.
write_wrapper() {
    local venv=$1 root=$2 py=$3
    rm -f "$venv/bin/python$py"
    cat >"$venv/bin/python$py" <<EOF
#!/bin/sh
# pi-sim: run the arm64 python$py of $root under qemu (no binfmt_misc needed).
# QEMU_CPU (cortex-a72 = Pi 4, cortex-a76 = Pi 5) is read by qemu from the environment.
exec qemu-aarch64-static -L "$root" -0 "\$0" "$root/usr/bin/python$py" "\$@"
EOF
    chmod +x "$venv/bin/python$py"
}

# A clean environment, as under systemd: no host PYTHON*/PIP* settings leak in.
emu() {
    env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$WORK/home" LANG=C.UTF-8 TZ=UTC \
        QEMU_CPU="${QEMU_CPU:-cortex-a72}" PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_NO_INPUT=1 TF_CPP_MIN_LOG_LEVEL=2 "$@"
}

make_venv() {
    local suite=$1 py=$2
    local root venv=$WORK/venvs/$1 house=$WORK/wheels/$1
    root=$WORK/$(suite_release "$1")/root
    local reqs extra key
    reqs=$(suite_reqs "$suite")
    extra=$(suite_extra "$suite")
    key=$(cat "$root/.pisim-ok" "$house/.key" | sha256sum | cut -c1-16)
    if [[ -f $venv/.pisim-key && $(cat "$venv/.pisim-key") == "$key" ]]; then
        if [[ $(cat "$venv/.pisim-wheel" 2>/dev/null) != "$WHEEL_DIGEST" ]]; then
            say "$suite: project wheel changed: reinstalling it into the cached venv"
            (cd "$WORK" && emu "$venv/bin/python" -m pip install -q --no-compile --no-deps --force-reinstall \
                --no-index "$house/$(basename "$WHEEL")")
            echo "$WHEEL_DIGEST" >"$venv/.pisim-wheel"
        fi
        return 0
    fi
    say "$suite: new venv (Python $py, $reqs, extra [$extra]) - a few minutes under qemu the first time"
    rm -rf "$venv"
    mkdir -p "$WORK/home" "$WORK/venvs"
    # Exactly install.sh's venv, minus ensurepip (its subprocess would exec the arm64 ELF
    # directly); pip then comes from the wheelhouse instead of Debian's bundled copy.
    (cd "$WORK" && emu qemu-aarch64-static -L "$root" "$root/usr/bin/python$py" -m venv --system-site-packages \
        --without-pip "$venv")
    write_wrapper "$venv" "$root" "$py"
    local pipwhl
    pipwhl=$(find "$house" -maxdepth 1 -name 'pip-*.whl' | head -1)
    (cd "$WORK" && emu "$venv/bin/python" "$pipwhl/pip" install -q --no-compile --no-index "$pipwhl")
    # install.sh: pip install --prefer-binary $CAR_DETECTOR_PIP_ARGS "${PY_REQS[@]}" "wheel[extra]".
    # --no-compile only saves minutes of bytecode compilation under qemu; imports compile lazily.
    # shellcheck disable=SC2086
    (cd "$WORK" && emu "$venv/bin/python" -m pip install --no-compile --prefer-binary --no-index \
        --find-links "$house" $reqs "$house/$(basename "$WHEEL")[$extra]") >"$WORK/logs/$suite-pip.log" 2>&1 \
        || { tail -30 "$WORK/logs/$suite-pip.log" >&2; die "$suite: pip could not install the deploy's requirements (above)"; }
    echo "$WHEEL_DIGEST" >"$venv/.pisim-wheel"
    echo "$key" >"$venv/.pisim-key"
}

# All suites of one Debian release, one after the other (they share its root).
setup_release() {
    local release=$1 suite py
    py=$(release_python "$release")
    bash "$REPO/pisim/build_rootfs.sh" "$release" "$py" "$WORK/$release"
    for suite in $SUITES; do
        [[ $(suite_release "$suite") == "$release" ]] || continue
        fill_wheelhouse "$suite" "$py" "$(release_glibc "$release")"
        make_venv "$suite" "$py"
        say "$suite: venv ready: $(find "$WORK/venvs/$suite"/lib/python*/site-packages -maxdepth 1 -name '*.dist-info' \
            -printf '%f\n' | sed 's/\.dist-info$//' | grep -iE '^(car_detector|tflite_runtime|ai_edge_litert|numpy|av)-' \
            | sort | tr '\n' ' ')"
    done
}

# ------------------------------------------------------------------ host (x86) side ---

host_side() {
    local res=$WORK/results
    if [[ ! -f $WORK/frames.npz || $(cat "$WORK/frames.key" 2>/dev/null) != "$VIDEO $FRAMES" ]]; then
        "$PYTHON" "$COMPARE" frames --video "$VIDEO" --count "$FRAMES" --out "$WORK"
        echo "$VIDEO $FRAMES" >"$WORK/frames.key"
    fi
    "$PYTHON" "$COMPARE" macs --model "$MODEL" --out "$WORK/macs.json"
    for rt in tflite-runtime litert; do
        "$PYTHON" "$COMPARE" infer --model "$MODEL" --runtime "$rt" --frames "$WORK/frames.npz" \
            --label "x86-$rt" --out "$res/x86-$rt" --time-runs 100
        replay "x86-$rt" "$rt" "$PYTHON"
    done
}

# The daemon itself on the PNG frames; events land in results/<label>-events.jsonl.
replay() {
    local label=$1 runtime=$2 python=$3 res=$WORK/results
    local cfg=$WORK/configs/$label.toml events=$res/$label-events.jsonl rc=0
    mkdir -p "$WORK/configs"
    rm -f "$events"*
    "$PYTHON" "$COMPARE" config --model "$MODEL" --runtime "$runtime" --frames-dir "$WORK/png" \
        --events "$events" --out "$cfg"
    if [[ $python == "$PYTHON" ]]; then
        "$PYTHON" -m edge run --config "$cfg" --max-frames "$FRAMES" >"$WORK/logs/$label-replay.log" 2>&1 || rc=$?
    else
        (cd "$WORK" && emu "$python" -m edge run --config "$cfg" --max-frames "$FRAMES") \
            >"$WORK/logs/$label-replay.log" 2>&1 || rc=$?
    fi
    echo "$rc" >"$res/$label-replay.rc"
    ((rc == 0)) || say "$label: daemon replay exited $rc (see $WORK/logs/$label-replay.log)"
}

# ------------------------------------------------------------------ emulated side ---

emulated_release() {
    local release=$1 suite
    for suite in $SUITES; do
        [[ $(suite_release "$suite") == "$release" ]] && emulated_suite "$suite"
    done
    return 0
}

emulated_suite() {
    local suite=$1 venv=$WORK/venvs/$1 res=$WORK/results board label cpu rc
    local root
    root=$WORK/$(suite_release "$1")/root
    for board in $BOARDS; do
        # The board's /proc/cpuinfo + /sys tree and qemu's CPU model must always agree:
        # XNNPACK trusts the MIDR (a Cortex-A76 part number enables its dot-product kernels).
        cpu=$("$PYTHON" "$REPO/pisim/pi_hardware.py" "$root" "$board")
        export QEMU_CPU=$cpu
        for rt in $(suite_runtimes "$suite"); do
            label=$(target_label "$suite" "$board" "$rt")
            rm -f "$res/$label".* "$res/$label"-*
            rc=0
            (cd "$WORK" && emu "$venv/bin/car-detector" preflight --model "$MODEL" --runtime "$rt") \
                >"$WORK/logs/$label-preflight.out" 2>"$WORK/logs/$label-preflight.log" || rc=$?
            if ((rc == 0)); then
                tail -1 "$WORK/logs/$label-preflight.out" >"$res/$label-preflight.json"
            else
                "$PYTHON" -c 'import json,sys; print(json.dumps({"ok": False, "rc": int(sys.argv[1]), "error": open(sys.argv[2]).read()[-2000:]}))' \
                    "$rc" "$WORK/logs/$label-preflight.log" >"$res/$label-preflight.json"
            fi
            (cd "$WORK" && emu "$venv/bin/python" "$COMPARE" infer --model "$MODEL" --runtime "$rt" \
                --frames "$WORK/frames.npz" --label "$label" --out "$res/$label" --require-installed) \
                >"$WORK/logs/$label-infer.log" 2>&1 || say "$label: inference failed (see $WORK/logs/$label-infer.log)"
            replay "$label" "$rt" "$venv/bin/python"
            say "$label: done (preflight rc=$rc)"
        done
    done
}

# ------------------------------------------------------------------------- main ---

main() {
    mkdir -p "$WORK/logs" "$WORK/results" "$WORK/home"
    need_tools
    say "model $MODEL, $FRAMES frames of $(basename "$VIDEO"), suites: $SUITES, boards: $BOARDS"
    build_project_wheel
    local releases=() suite release
    for suite in $SUITES; do
        release=$(suite_release "$suite")
        [[ " ${releases[*]} " == *" $release "* ]] || releases+=("$release")
    done
    # The two releases build in parallel with the host side (2 cores: qemu is single-threaded).
    local pids=()
    for release in "${releases[@]}"; do
        (setup_release "$release" >"$WORK/logs/$release-setup.log" 2>&1) &
        pids+=($!)
    done
    host_side
    local i=0 failed=0
    for release in "${releases[@]}"; do
        wait "${pids[$i]}" || { failed=1; tail -20 "$WORK/logs/$release-setup.log" >&2; say "$release: setup FAILED"; }
        i=$((i + 1))
    done
    ((failed == 0)) || die "arm64 setup failed (logs in $WORK/logs)"
    for release in "${releases[@]}"; do cat "$WORK/logs/$release-setup.log"; done
    pids=()
    for release in "${releases[@]}"; do
        (emulated_release "$release") &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    local targets=() board
    for suite in $SUITES; do
        for board in $BOARDS; do
            for rt in $(suite_runtimes "$suite"); do targets+=("$(target_label "$suite" "$board" "$rt"):$rt"); done
        done
    done
    local rc=0
    "$PYTHON" "$COMPARE" report --work "$WORK" --targets "$(IFS=,; echo "${targets[*]}")" --out "$REPORT" \
        --model "$MODEL" ${PISIM_MAX_LSB:+--max-lsb "$PISIM_MAX_LSB"} || rc=$?
    say "finished in $((SECONDS - T0)) s (exit $rc)"
    return "$rc"
}

main "$@"
