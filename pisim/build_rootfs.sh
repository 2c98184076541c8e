#!/usr/bin/env bash
# Build a minimal arm64 Debian userland (just enough for CPython + the wheels the
# deploy installs) without binfmt_misc, debootstrap's second stage or touching the
# host's dpkg/apt state.
#
# Why this way: debootstrap --foreign needs its second stage run *inside* the arm64
# root, which needs binfmt_misc (absent here). Instead we let a private apt instance
# (its own lists, cache and an empty dpkg status, APT::Architecture=arm64) resolve the
# dependency closure of python3.X + libstdc++6 and download it, then unpack every .deb
# with dpkg-deb -x. No maintainer script runs: none of what we need depends on one.
# The result is used with `qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.X`.
#
# usage: build_rootfs.sh SUITE PYVER DEST     e.g. build_rootfs.sh bookworm 3.11 .pi-sim/bookworm
# env:   PISIM_MIRROR  Debian mirror (default: the host's own deb.debian.org entry)
#        PISIM_SYSTEM_PACKAGES  extra Debian packages (default python3-numpy; "" for none)
# Idempotent: DEST/root/.pisim-ok marks a finished root and the script returns at once.
set -euo pipefail

suite=${1:?suite (bookworm|trixie)}
pyver=${2:?python version, e.g. 3.11}
dest=$(realpath -m "${3:?destination dir}")
root="$dest/root"
aptdir="$dest/apt"
stamp="$root/.pisim-ok"
# base-files: /etc/os-release, so the report can show which Debian answered.
# python3-numpy: what python3-picamera2 pulls onto a Pi; the deploy's venv uses
# --system-site-packages, so this NumPy is visible to pip and to the daemon there too.
want="base-files python$pyver libstdc++6 ${PISIM_SYSTEM_PACKAGES-python3-numpy}"

if [[ -f $stamp && "$(cat "$stamp")" == "$suite $pyver $want" ]]; then
    echo "pi-sim: $suite arm64 root already built: $root"
    exit 0
fi

# The host's Debian mirror, so that this works wherever the host's own apt works.
host_mirror() {
    local uri
    uri=$(grep -hoE '(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | grep -oE 'https?://[^[:space:]]+/debian/?' | grep -v security | head -1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}
mirror=${PISIM_MIRROR:-$(host_mirror)}
mirror=${mirror%/}

mkdir -p "$aptdir"/{etc/preferences.d,etc/sources.list.d,lists/partial,cache/archives/partial,state}
: >"$aptdir/state/status"
cat >"$aptdir/etc/sources.list" <<EOF
deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main
EOF

apt_opts=(
    -o "Dir::Etc::SourceList=$aptdir/etc/sources.list"
    -o "Dir::Etc::SourceParts=$aptdir/etc/sources.list.d"
    -o "Dir::Etc::Preferences=$aptdir/etc/preferences"
    -o "Dir::Etc::PreferencesParts=$aptdir/etc/preferences.d"
    -o "Dir::State::Lists=$aptdir/lists"
    -o "Dir::State::status=$aptdir/state/status"
    -o "Dir::Cache=$aptdir/cache"
    -o "Dir::Cache::archives=$aptdir/cache/archives"
    -o "APT::Architecture=arm64"
    -o "APT::Architectures=arm64"
    -o "APT::Install-Recommends=false"
    -o "APT::Get::AllowUnauthenticated=false"
    -o "Debug::NoLocking=true"
    -o "Acquire::Languages=none"
    -o "Dpkg::Use-Pty=false"
)

echo "pi-sim: resolving $want for $suite/arm64 from $mirror"
# Lists older than a day are refreshed; otherwise reuse (second runs stay offline-fast).
if [[ -z $(find "$aptdir/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1) ]]; then
    apt-get "${apt_opts[@]}" -q update >"$aptdir/update.log" 2>&1 || {
        cat "$aptdir/update.log" >&2
        echo "pi-sim: apt-get update for $suite/arm64 failed (mirror $mirror); set PISIM_MIRROR" >&2
        exit 1
    }
fi
# shellcheck disable=SC2086
apt-get "${apt_opts[@]}" -q -y --download-only install $want >"$aptdir/install.log" 2>&1 || {
    cat "$aptdir/install.log" >&2
    echo "pi-sim: could not resolve/download $want for $suite/arm64" >&2
    exit 1
}

# Exactly the packages apt chose for $want (the cache may hold debs of earlier package sets).
# shellcheck disable=SC2086
mapfile -t chosen < <(apt-get "${apt_opts[@]}" -s install $want | awk '$1 == "Inst" {gsub(/[()]/, "", $3); print $2 " " $3}')
rm -rf "$root"
mkdir -p "$root" "$dest/control"
rm -rf "${dest:?}/control/"*
n=0
for entry in "${chosen[@]}"; do
    name=${entry% *}
    version=${entry#* }
    debs=("$aptdir/cache/archives/${name}_${version//:/%3a}_"*.deb)
    [[ -f ${debs[0]} ]] || { echo "pi-sim: $name $version was not downloaded" >&2; exit 1; }
    dpkg-deb -x "${debs[0]}" "$root"
    dpkg-deb -e "${debs[0]}" "$dest/control/$name"
    n=$((n + 1))
done
# Merged /usr, as on every Bookworm/Trixie install: /lib/ld-linux-aarch64.so.1 (the ELF
# interpreter qemu looks up under -L) must resolve whichever half a package shipped in.
for d in bin sbin lib; do
    if [[ -d $root/$d && ! -L $root/$d ]]; then
        mkdir -p "$root/usr/$d"
        cp -a "$root/$d/." "$root/usr/$d/"
        rm -rf "${root:?}/$d"
    fi
    [[ -e $root/$d ]] || ln -s "usr/$d" "$root/$d"
done
# The one maintainer-script effect we need: update-alternatives links (libblas.so.3 and
# liblapack.so.3 for Debian's NumPy). Highest priority wins, as update-alternatives --auto.
python3 - "$root" "$dest/control" <<'PY'
import os, re, sys
root, control = sys.argv[1], sys.argv[2]
best = {}
for pkg in sorted(os.listdir(control)):
    script = os.path.join(control, pkg, "postinst")
    if not os.path.isfile(script):
        continue
    text = open(script, errors="replace").read().replace("\\\n", " ")
    for m in re.finditer(r"update-alternatives\s+--install\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)", text):
        link, _name, target, prio = m.groups()
        if "$" in link or "$" in target:
            continue  # computed in shell; none of our packages need one
        if link not in best or int(prio) > best[link][1]:
            best[link] = (target, int(prio))
for link, (target, _prio) in sorted(best.items()):
    path = root + link
    if not os.path.exists(root + target):
        continue
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.remove(path)
    os.symlink(os.path.relpath(root + target, os.path.dirname(path)), path)
    print(f"pi-sim: alternative {link} -> {target}")
PY
# Shadow host paths that Python would otherwise fall through to: qemu's -L only
# redirects a path when it exists under the root, and this host is a Python 3.11 box too.
mkdir -p "$root/usr/local/lib/python$pyver/dist-packages" "$root/etc"
: >"$root/etc/ld.so.cache"
if [[ ! -x $root/usr/bin/python$pyver ]]; then
    echo "pi-sim: $root/usr/bin/python$pyver missing after unpacking $n packages" >&2
    exit 1
fi
echo "$suite $pyver $want" >"$stamp"
echo "pi-sim: $suite arm64 root ready ($n packages, $(du -sh "$root" | cut -f1)): $root"
