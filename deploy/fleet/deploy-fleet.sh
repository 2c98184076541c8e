#!/usr/bin/env bash
# Deploy car-detector to every Raspberry Pi of an Ansible inventory, all at once:
#
#   make deploy-fleet INVENTORY=deploy/fleet/inventory.yml [DRY_RUN=1] [MODEL=artifacts/latest]
#                     [LIMIT=cam-a,cam-b] [FORKS=20]
#
# The same deploy as `make deploy PI=...`, once per host and in parallel:
# 1. here, once: deploy.sh --stage-only runs make deploy's local checks and builds its bundle
#    in build/deploy (DRY_RUN=1: builds nothing, only computes the ids a plan needs);
# 2. ansible-playbook runs deploy/fleet/playbook.yml: on every host at once it copies the
#    bundle, with that host's camera_id and metrics_port written into its default config
#    (host_config.py), and runs deploy/install.sh as root (become, unless logged in as root or the host
#    has car_detector_pi_root), which checks, installs beside, preflights, switches and
#    restarts - or rolls back - exactly as for one Pi. One host failing stops no other;
# 3. one line per host: ok / unchanged / planned / rolled back / failed, with the reason;
#    the same in build/fleet/results.json, each host's install output in build/fleet/logs/.
#
# A site fine-tune (report.json with a `site` section) is compared with the model each host
# runs, by the rule of `make deploy` (deploy/site_gate.py): a host where it is worse, or where
# the report cannot say, is "refused" and left as it is; FORCE=1 deploys it anyway.
#
# Environment: INVENTORY (required: an Ansible inventory, see inventory.example.yml), DRY_RUN,
# FORCE, MODEL, WHEEL, CONFIG and PYTHON as for deploy.sh, LIMIT (ansible-playbook --limit), FORKS
# (hosts deployed at the same time, default 20), ANSIBLE_PLAYBOOK (default: the one beside
# PYTHON, else on PATH), and any CAR_DETECTOR_* variable, forwarded to install.sh on every host
# (per host: car_detector_env in the inventory).
#
# Exit codes: 0 every host ok (or unchanged / planned); 4 some hosts rolled back, the rest ok;
# 8 some hosts refused the site fine-tune (none failed); 1 some host failed otherwise
# (unreachable, a check, the rollback itself); 2 bad local input.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEPLOY=$(dirname "$HERE")
REPO=$(dirname "$DEPLOY")
# shellcheck source=deploy/lib.sh
. "$DEPLOY/lib.sh"
cd "$REPO"

OUT=$REPO/build/fleet

check_inventory() {
    INVENTORY=${INVENTORY:-}
    [[ -n $INVENTORY ]] || ws_die 2 "INVENTORY is not set: which Pis should this go to?" \
        "copy deploy/fleet/inventory.example.yml, list your Pis in it, then make deploy-fleet INVENTORY=that-file"
    [[ -r $INVENTORY ]] || ws_die 2 "INVENTORY=$INVENTORY is not a readable file" \
        "pass the path of your inventory (deploy/fleet/inventory.example.yml shows the layout)"
    INVENTORY=$(cd "$(dirname "$INVENTORY")" && pwd)/$(basename "$INVENTORY")
}

find_ansible() {
    local beside
    beside=$(dirname "$PYTHON")/ansible-playbook
    if [[ -n ${ANSIBLE_PLAYBOOK:-} ]]; then
        :
    elif [[ -x $beside ]]; then
        ANSIBLE_PLAYBOOK=$beside
    else
        ANSIBLE_PLAYBOOK=$(command -v ansible-playbook || true)
    fi
    [[ -n $ANSIBLE_PLAYBOOK && -x $ANSIBLE_PLAYBOOK ]] || ws_die 2 "ansible-playbook not found (next to $PYTHON or on PATH)" \
        "make venv installs it (the fleet extra: pip install -e '.[fleet]'), or sudo apt install ansible-core (2.17 or newer)"
}

# The hosts the playbook will run on, one per line (what --list-hosts prints, indented).
list_hosts() {
    local out
    if ! out=$("$ANSIBLE_PLAYBOOK" -i "$INVENTORY" "${LIMIT_ARGS[@]}" --list-hosts "$HERE/playbook.yml" 2>&1 </dev/null); then
        printf '%s\n' "$out" >&2
        ws_die 2 "ansible cannot read INVENTORY=$INVENTORY (output above)" \
            "fix the inventory; ansible-inventory -i $INVENTORY --graph shows how Ansible reads it"
    fi
    awk '/^ *hosts \([0-9]+\):/ {on = 1; next} on && NF {print $1}' <<<"$out"
}

# Extra variables for the playbook: paths, the forwarded environment, the dry-run plan ids.
write_vars() {
    "$PYTHON" - "$OUT" "$DEPLOY" "${DRY_RUN:-}" "${CONFIG:-firmware_config/config.toml}" "$MODEL" "$SITE_KIND" \
        "${FORCE:-}" "${INVENTORY}" <<'EOF'
import json, os, sys
from pathlib import Path

def true(value: str) -> bool:
    return value.lower() in {"1", "y", "yes", "true", "on"}

out, scripts, dry = Path(sys.argv[1]), sys.argv[2], true(sys.argv[3])
base_config, model = os.path.abspath(sys.argv[4]), os.path.abspath(sys.argv[5])
plan = {}
if dry:
    for line in (out / "plan.env").read_text().splitlines():
        name, _, value = line.partition("=")
        plan[name] = value
forward = {k: v for k, v in os.environ.items() if k.startswith("CAR_DETECTOR_")}
(out / "vars.json").write_text(json.dumps({
    "fleet_out": str(out), "fleet_scripts": scripts, "fleet_bundle": str(out / "bundle.tar.gz"),
    "fleet_dry_run": dry, "fleet_forward_env": forward, "fleet_plan_env": plan,
    "fleet_python": sys.executable, "fleet_base_config": base_config,
    "fleet_site": sys.argv[6] == "site", "fleet_model": model, "fleet_force": true(sys.argv[7]),
    "fleet_command": f"make deploy-fleet INVENTORY={sys.argv[8]} MODEL={sys.argv[5]}",
}, indent=2))
EOF
}

# One line per host from the playbook's result files; exit code by the worst host.
summarize() {
    "$PYTHON" - "$OUT" "$@" <<'EOF'
import json, sys
from pathlib import Path

out, hosts = Path(sys.argv[1]), sys.argv[2:]
results = []
for host in sorted(hosts):
    path = out / "results" / f"{host}.json"
    if path.is_file():
        results.append(json.loads(path.read_text()))
    else:
        results.append({"host": host, "status": "failed", "rc": -1, "log": "",
                        "reason": "no result: ansible-playbook stopped before this host finished (its output above says why)"})
(out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
width = max(len(r["host"]) for r in results)
print(f"==> Fleet: {len(results)} host(s)")
for r in results:
    print(f"{r['host']:<{width}}  {r['status']:<11}  {r['reason']}")
failed = sorted(r["host"] for r in results if r["status"] == "failed")
rolled = sorted(r["host"] for r in results if r["status"] == "rolled back")
refused = sorted(r["host"] for r in results if r["status"] == "refused")
if failed or rolled or refused:
    print(f"install output per host: {out}/logs/HOST.log; summary: {out}/results.json", file=sys.stderr)
sys.exit(1 if failed else 8 if refused else 4 if rolled else 0)
EOF
}

main() {
    ws_default_python
    check_inventory
    find_ansible
    LIMIT_ARGS=()
    [[ -n ${LIMIT:-} ]] && LIMIT_ARGS=(--limit "$LIMIT")
    local hosts
    mapfile -t hosts < <(list_hosts)
    ((${#hosts[@]} > 0)) || ws_die 2 "INVENTORY=$INVENTORY${LIMIT:+ with LIMIT=$LIMIT} names no host" \
        "list your Pis under all.hosts (see deploy/fleet/inventory.example.yml)"
    ws_say "==> Fleet of ${#hosts[@]}: ${hosts[*]}"
    rm -rf "$OUT"
    mkdir -p "$OUT/results" "$OUT/logs"
    # The local checks and the bundle, once for all hosts (exit 2 on bad local input).
    bash "$DEPLOY/deploy.sh" --stage-only "$OUT/plan.env"
    MODEL=${MODEL:-artifacts/latest}
    # A site fine-tune is compared with each host's model in the playbook (exit 2: bad report).
    SITE_KIND=$("$PYTHON" "$DEPLOY/site_gate.py" "$MODEL" </dev/null) || exit 2
    if ! ws_is_true "${DRY_RUN:-}"; then
        tar -C build/deploy -czf "$OUT/bundle.tar.gz" .
    fi
    write_vars
    ws_step "ansible-playbook on ${#hosts[@]} host(s), ${FORKS:-20} at a time"
    local rc=0
    # Pipelining: each task is one ssh round trip instead of three (copy module, run, clean up).
    export ANSIBLE_PIPELINING=${ANSIBLE_PIPELINING:-True}
    ANSIBLE_RETRY_FILES_ENABLED=0 "$ANSIBLE_PLAYBOOK" -i "$INVENTORY" "${LIMIT_ARGS[@]}" \
        --forks "${FORKS:-20}" -e "@$OUT/vars.json" "$HERE/playbook.yml" || rc=$?
    ws_say "    ansible-playbook exit $rc"
    summarize "${hosts[@]}"
}

main "$@"
