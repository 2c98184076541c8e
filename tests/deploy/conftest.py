"""A real ssh target on 127.0.0.1 that plays the Raspberry Pi for the deploy tests.

- `pi_target`: an OpenSSH server started for the session on a free port, with its own
  sshd_config (host key, authorized_keys and pid file in tmp, ListenAddress 127.0.0.1,
  StrictModes no, UsePAM no) and a throwaway key pair. We log in as the user running the
  tests (root in CI, as on a Pi deployed with PI=root@...). The sshd puts tests/fakes/bin
  first on the session's PATH: there is no systemd as PID 1 here, so `systemctl` is a
  recording fake, and `rpicam-hello` answers --list-cameras from a file.
- `wheelhouse`: the target venv is built offline and fast by pip from a local wheelhouse
  (CAR_DETECTOR_PIP_ARGS="--no-index --find-links DIR"). Its wheels are repacked from the
  distributions already installed in the test interpreter (same versions CI resolved), so
  pip really resolves and installs the project's `edge` extra with no network.
- `deployed`: one real `deploy/deploy.sh` run into a temporary PI_ROOT, shared by the
  tests that go on from an installed state (building the venv is the slow part, ~15 s).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import getpass
import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
FAKE_BIN = REPO / "tests" / "fakes" / "bin"
DEPLOY = REPO / "deploy" / "deploy.sh"
UNINSTALL = REPO / "deploy" / "uninstall.sh"


# ---------------------------------------------------------------------------- binaries

def _apt_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env,
                       capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.fail(f"{package} is not installed and `apt-get install {package}` failed: {exc} "
                    f"{detail.decode(errors='replace')[-500:]}")


def ensure_binary(path: str, package: str) -> str:
    """The binary at `path`, installing its Debian package first if it is missing."""
    if not os.path.exists(path):
        _apt_install(package)
    if not os.path.exists(path):
        pytest.fail(f"apt-get installed {package} but {path} is still missing")
    return path


def with_overrides(env: dict[str, str], overrides: dict[str, str | None]) -> dict[str, str]:
    """`env` with each override set, or removed where its value is None."""
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- the "Pi"

@dataclass
class PiTarget:
    """How to reach the fake Pi, and the fakes' state directory (FAKE_PI_STATE)."""

    user: str
    port: int
    key: Path
    state: Path

    @property
    def pi(self) -> str:
        return f"{self.user}@127.0.0.1"

    @property
    def ssh_opts(self) -> str:
        return (f"-i {self.key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                f"-o LogLevel=ERROR -p {self.port}")

    def ssh(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ssh", *self.ssh_opts.split(), "-o", "BatchMode=yes", self.pi, command],
                              capture_output=True, text=True, timeout=60)

    # fakes
    def systemctl_calls(self) -> list[str]:
        log = self.state / "systemctl.log"
        return log.read_text().splitlines() if log.exists() else []

    def queue_is_active(self, *answers: str) -> None:
        (self.state / "is-active").write_text("".join(a + "\n" for a in answers))

    def set_cameras(self, *sensors: str) -> None:
        (self.state / "cameras").write_text("".join(s + "\n" for s in sensors))

    def reset_fakes(self) -> None:
        for name in ("is-active", "cameras"):
            (self.state / name).unlink(missing_ok=True)


@contextlib.contextmanager
def running_sshd(work: Path) -> Iterator[PiTarget]:
    """An sshd on a free 127.0.0.1 port playing one Pi, its keys and fakes' state in `work`;
    stopped on exit. The fleet tests start several, one per "Pi"."""
    sshd = ensure_binary("/usr/sbin/sshd", "openssh-server")
    ensure_binary("/usr/bin/ssh-keygen", "openssh-client")
    state = work / "state"
    state.mkdir()
    key, host_key = work / "id_ed25519", work / "host_ed25519"
    for k in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
    authorized = work / "authorized_keys"
    shutil.copyfile(f"{key}.pub", authorized)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
    port = free_port()
    path = f"{FAKE_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    config = work / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\n"
        f"PidFile {work / 'sshd.pid'}\n"
        "StrictModes no\n"
        "UsePAM no\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        f"SetEnv PATH={path} FAKE_PI_STATE={state}\n"
        "LogLevel ERROR\n"
    )
    log = open(work / "sshd.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    target = PiTarget(user=getpass.getuser(), port=port, key=key, state=state)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited with {proc.returncode}: {(work / 'sshd.log').read_text()[-2000:]}")
            probe = target.ssh("true")
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"cannot log in to the test sshd on port {port}: {probe.stderr[-1000:]} "
                            f"sshd log: {(work / 'sshd.log').read_text()[-1000:]}")
            time.sleep(0.2)
        which = target.ssh("command -v systemctl")
        assert which.stdout.strip() == str(FAKE_BIN / "systemctl"), (
            f"the ssh session must find the fake systemctl first on PATH, found {which.stdout!r}")
        yield target
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def pi_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PiTarget]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as target:
        yield target


# ---------------------------------------------------------------------------- wheelhouse

def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack_installed(name: str, out_dir: Path) -> Path:
    """Rebuild a wheel from an installed distribution (its RECORD lists its files)."""
    dist = metadata.distribution(name)
    info = Path(str(dist._path))  # type: ignore[attr-defined] - the .dist-info directory
    wheel_meta = (info / "WHEEL").read_text()
    tags = [line.split(":", 1)[1].strip() for line in wheel_meta.splitlines() if line.startswith("Tag:")]
    if not tags or dist.files is None:
        pytest.fail(f"cannot repack {name}: {info} has no WHEEL tags or RECORD")
    dist_name = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    # A universal wheel lists several tags (py2-none-any, py3-none-any); its file name must
    # carry the compressed set (py2.py3-none-any) or pip on Python 3 rejects it.
    parts = [t.split("-") for t in tags]
    tag = "-".join(".".join(dict.fromkeys(p[i] for p in parts)) for i in range(3))
    target = out_dir / f"{dist_name}-{dist.version}-{tag}.whl"
    rows = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for f in dist.files:
            rel = str(f)
            # Scripts outside site-packages are regenerated by pip from entry_points.txt.
            if rel.startswith("..") or "__pycache__" in rel or rel == f"{info.name}/RECORD":
                continue
            path = Path(str(dist.locate_file(f)))
            if not path.is_file():
                continue
            data = path.read_bytes()
            zf.writestr(rel, data)
            rows.append((rel, _record_hash(data), str(len(data))))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerows(rows)
        writer.writerow((f"{info.name}/RECORD", "", ""))
        zf.writestr(f"{info.name}/RECORD", buf.getvalue())
    return target


def edge_requirements(extra: str) -> set[str]:
    """Distribution names `pip install car_detector[extra]` needs, resolved transitively
    against what is installed here (so the wheelhouse follows pyproject.toml)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # Markers are evaluated with extra=<extra> for the project's own requirements only.
    todo = [(Requirement(r), extra) for r in project["dependencies"]]
    todo += [(Requirement(r), extra) for r in project["optional-dependencies"][extra]]
    seen: set[str] = set()
    while todo:
        req, req_extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": req_extra}):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} (needed by car-detector[{extra}]) is not installed in {sys.executable}; "
                        "the deploy tests build the target venv from the test interpreter's packages")
        todo += [(Requirement(sub), "") for sub in dist.requires or []]
    return seen


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    extra = "edge" if sys.version_info < (3, 12) else "litert"
    out = tmp_path_factory.mktemp("wheelhouse")
    for name in sorted(edge_requirements(extra)):
        repack_installed(name, out)
    return out


# ---------------------------------------------------------------------------- deploys

def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root` with type, mode, size, mtime and link target.

    run/ (the deploy lock) and __pycache__ (written by any Python that imports from the
    venv; the tests install with --no-compile) are not part of the installed state.
    """
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == "run" or rel_dir.startswith("run/"):
            continue
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            out[os.path.normpath(os.path.join(rel_dir, name))] = (st.st_mode, st.st_size, st.st_mtime_ns, link)
    return out



def run_script(script: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def explain(result: subprocess.CompletedProcess[str]) -> str:
    """Both streams of a script run, for assertion messages."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-4000:]}"


def target_python() -> str:
    """The interpreter the target venv is made from: Debian's /usr/bin/python3 when it is the
    test interpreter's version (like a Pi: --system-site-packages then sees only apt's
    dist-packages), else the test interpreter itself (the wheelhouse is built for it)."""
    system = "/usr/bin/python3"
    probe = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"
    want = "%d.%d" % sys.version_info[:2]
    if os.path.exists(system):
        got = subprocess.run([system, "-c", probe], capture_output=True, text=True)
        if got.returncode != 0 and os.geteuid() == 0:
            _apt_install("python3-venv")
            got = subprocess.run([system, "-c", probe], capture_output=True, text=True)
        if got.returncode == 0 and got.stdout.strip() == want:
            return system
    return sys.executable


@dataclass
class Deployment:
    """A temporary PI_ROOT that received a real deploy, plus what a test needs to redeploy."""

    pi: PiTarget
    root: Path
    model_dir: Path
    wheelhouse: Path
    first: subprocess.CompletedProcess[str]
    wheel: Path
    python: str = field(default_factory=target_python)

    def env(self, **overrides: str | None) -> dict[str, str]:
        """Environment for deploy.sh/uninstall.sh as `make deploy` would pass it, plus the
        switches that make an x86 test box with no camera and no network acceptable."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAR_DETECTOR_", "PI_", "DRY_RUN"))}
        env.update(
            PI=self.pi.pi,
            SSH_OPTS=self.pi.ssh_opts,
            PI_ROOT=str(self.root),
            MODEL=str(self.model_dir),
            PYTHON=sys.executable,
            WHEEL=str(self.wheel),
            CAR_DETECTOR_ALLOW_ANY_ARCH="1",
            CAR_DETECTOR_SKIP_CAMERA_CHECK="1",
            CAR_DETECTOR_PYTHON=self.python,
            CAR_DETECTOR_PIP_ARGS=f"--no-index --find-links {self.wheelhouse} --no-compile",
            CAR_DETECTOR_SETTLE_S="0",
        )
        return with_overrides(env, overrides)

    def deploy(self, **overrides: str | None) -> subprocess.CompletedProcess[str]:
        return run_script(DEPLOY, self.env(**overrides))

    def uninstall(self, **overrides: str | None) -> subprocess.CompletedProcess[str]:
        return run_script(UNINSTALL, self.env(**overrides))

    # paths on the target
    @property
    def current_model(self) -> Path:
        return self.root / "var/lib/car-detector/model/current"

    @property
    def venv_link(self) -> Path:
        return self.root / "opt/car-detector/venv"

    @property
    def config(self) -> Path:
        return self.root / "etc/car-detector/config.toml"


@pytest.fixture(scope="session")
def deployed(pi_target: PiTarget, wheelhouse: Path, trained_model_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """The first deploy into a fresh root, building the wheel from this checkout as
    `make deploy` does (the later deploys reuse that wheel through WHEEL= to save time)."""
    root = tmp_path_factory.mktemp("pi-root")
    dep = Deployment(pi=pi_target, root=root, model_dir=Path(trained_model_dir), wheelhouse=wheelhouse,
                     first=subprocess.CompletedProcess([], 0), wheel=Path())
    first = run_script(DEPLOY, dep.env(WHEEL=None))
    assert first.returncode == 0, "first deploy failed:\n" + explain(first)
    built = sorted((REPO / "build" / "deploy").glob("*.whl"))
    assert len(built) == 1, f"deploy.sh should leave exactly one wheel in build/deploy, found {built}"
    keep = tmp_path_factory.mktemp("wheel") / built[0].name
    shutil.copyfile(built[0], keep)
    dep.first, dep.wheel = first, keep
    return dep
