#!/usr/bin/env bash
# Copy a Pi's labelled captures to this workstation and export them for fine-tuning:
#
#   make pull PI=user@host [CAPTURES=/var/lib/car-detector/capture] [DEST=data/captures/HOST]
#                          [OUT=data/site/HOST] [SSH_OPTS=...]
#
# 1. on the Pi (as root: the capture folder is the service's, 0750), lists the frames whose
#    sidecar holds labels (labelled on the page, "no car" included) and sends each of them,
#    picture and sidecar, as one tar stream over ssh - the same way deploy.sh sends its
#    bundle, so nothing beyond tar is needed on the Pi and unlabelled frames stay there;
# 2. unpacks them into DEST (frames already there are refreshed: the Pi's labels are newer);
# 3. exports DEST as a YOLO folder in OUT (car-detector export-captures), ready for
#    `python -m training finetune --base artifacts/latest --data OUT`.
#
# Exit codes: 0 done, 1 nothing labelled on the Pi or the export failed, 2 bad input,
# 3 no root/sudo on the Pi, 4 no capture folder on the Pi, 7 the Pi cannot be reached.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=deploy/lib.sh
. "$HERE/lib.sh"
cd "$REPO"

# Runs on the Pi with the capture folder as $1. A labelled sidecar has `"labels": [`
# (edge.capture_store writes `"labels": null` until someone labels the frame).
# shellcheck disable=SC2016 # expanded on the Pi, not here
LIST_AND_SEND='dir=$1
if [ ! -d "$dir" ]; then
    printf "ERROR on %s: no capture folder %s\n  what to do: set capture.enabled = true in the config (and label frames on the page), or pass CAPTURES=capture.dir\n" "$(hostname)" "$dir" >&2
    exit 4
fi
cd "$dir" || exit 4
find . -maxdepth 1 -name "*.json" -exec grep -l -F "\"labels\": [" {} + | sed "s|^\./||" | sort |
    while read -r side; do printf "%s\n%s\n" "$side" "${side%.json}.png"; done |
    tar --ignore-failed-read -cf - -T -'

main() {
    ws_load_env pull
    local captures=${CAPTURES:-/var/lib/car-detector/capture}
    local dest=${DEST:-data/captures/$PI_HOST} out=${OUT:-data/site/$PI_HOST}
    ws_step "Reach $PI"
    ws_probe_ssh
    ws_step "Copy labelled frames from $PI:$captures to $dest"
    mkdir -p "$dest"
    local rc=0
    PULL_TAR=$(mktemp "${TMPDIR:-/tmp}/car-detector-pull.XXXXXX.tar")
    trap 'rm -f "$PULL_TAR"' EXIT
    local tmp=$PULL_TAR
    "${SSH[@]}" "$PI" "$(remote_root_cmd sh -c "$LIST_AND_SEND" pull "$captures")" </dev/null >"$tmp" || rc=$?
    case $rc in
        0) ;;
        3 | 4) exit "$rc" ;;  # the Pi said why
        255) ws_die 7 "lost the ssh connection to $PI while copying" "pulling again is safe" ;;
        *) ws_die 1 "listing or sending the captures on $PI failed (exit $rc; see above)" "check that 'ssh $PI ls CAPTURES' works, then pull again" ;;
    esac
    local frames
    frames=$(tar -tf "$tmp" | grep -c '\.png$' || true)
    if [[ $frames -eq 0 ]]; then
        ws_die 1 "no labelled frames in $PI:$captures" \
            "label frames on the page (ssh -L 8080:127.0.0.1:8080 $PI, then http://127.0.0.1:8080/), then pull again"
    fi
    tar -xf "$tmp" -C "$dest"
    ws_say "    $frames labelled frame(s) in $dest"
    ws_step "Export $dest as a YOLO folder in $out"
    "$PYTHON" -m edge export-captures --captures "$dest" --out "$out" || ws_die 1 "export failed (see above)" \
        "fix or remove the frames named above in $dest, then: $PYTHON -m edge export-captures --captures $dest --out $out"
    ws_say "pull from $PI: done; fine-tune with: $PYTHON -m training finetune --base artifacts/latest --data $out"
}

main "$@"
