"""Make an emulated arm64 root *look like* a Raspberry Pi 4 or 5 to the code inside it.

Why: qemu-user (7.2) passes /proc and /sys straight through from the x86 host. XNNPACK
(inside ai-edge-litert and tflite-runtime) identifies the CPU with the `cpuinfo` library,
which parses /proc/cpuinfo and /sys/devices/system/cpu; fed an x86 /proc/cpuinfo on an
arm64 build it finds zero ARM cores and ai-edge-litert 2.x segfaults in allocate_tensors.
qemu's `-L ROOT` looks a path up under ROOT first, so files written here shadow the
host's. They carry the real Pi's MIDR (implementer/part), so XNNPACK picks the kernels
it would pick on that board; the ISA features it uses come from qemu's `-cpu` model
(AT_HWCAP), which `QEMU_CPU` below names.

Values are those of Raspberry Pi OS 64-bit on the boards: BCM2711 (4x Cortex-A72 r0p3,
1.8 GHz) and BCM2712 (4x Cortex-A76 r4p1, 2.4 GHz).
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cache:
    level: int
    kind: str  # Data, Instruction, Unified
    size_kb: int
    ways: int
    shared: str  # shared_cpu_list


@dataclass(frozen=True)
class Board:
    name: str
    qemu_cpu: str
    ghz: float
    features: str
    variant: str
    part: str
    revision: int
    model: str
    caches: tuple[Cache, ...]


BOARDS: dict[str, Board] = {
    "pi4": Board(
        name="Raspberry Pi 4 (Cortex-A72)",
        qemu_cpu="cortex-a72",
        ghz=1.8,
        features="fp asimd evtstrm crc32 cpuid",
        variant="0x0",
        part="0xd08",
        revision=3,
        model="Raspberry Pi 4 Model B Rev 1.5",
        caches=(
            Cache(1, "Data", 32, 2, "self"),
            Cache(1, "Instruction", 48, 3, "self"),
            Cache(2, "Unified", 1024, 16, "0-3"),
        ),
    ),
    "pi5": Board(
        name="Raspberry Pi 5 (Cortex-A76)",
        qemu_cpu="cortex-a76",
        ghz=2.4,
        features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
        "asimdrdm lrcpc dcpop asimddp",
        variant="0x4",
        part="0xd0b",
        revision=1,
        model="Raspberry Pi 5 Model B Rev 1.0",
        caches=(
            Cache(1, "Data", 64, 4, "self"),
            Cache(1, "Instruction", 64, 4, "self"),
            Cache(2, "Unified", 512, 8, "self"),
            Cache(3, "Unified", 2048, 16, "0-3"),
        ),
    ),
}

CORES = 4


def cpuinfo_text(board: Board) -> str:
    blocks = []
    for cpu in range(CORES):
        blocks.append(
            f"processor\t: {cpu}\n"
            "BogoMIPS\t: 108.00\n"
            f"Features\t: {board.features}\n"
            "CPU implementer\t: 0x41\n"
            "CPU architecture: 8\n"
            f"CPU variant\t: {board.variant}\n"
            f"CPU part\t: {board.part}\n"
            f"CPU revision\t: {board.revision}\n"
        )
    return "\n".join(blocks) + f"\nModel\t\t: {board.model}\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")


def write_board(root: Path, board_key: str) -> Board:
    """Replace ROOT/proc/cpuinfo and ROOT/sys/devices/system/cpu with `board_key`'s."""
    if board_key not in BOARDS:
        raise ValueError(f"unknown board {board_key!r}; use one of {', '.join(BOARDS)}")
    board = BOARDS[board_key]
    if not (root / "usr").is_dir():
        raise FileNotFoundError(f"{root} is not an arm64 root (no usr/); run pisim/build_rootfs.sh first")
    _write(root / "proc" / "cpuinfo", cpuinfo_text(board))
    sysdir = root / "sys" / "devices" / "system" / "cpu"
    shutil.rmtree(sysdir, ignore_errors=True)
    span = f"0-{CORES - 1}"
    for name in ("possible", "present", "online"):
        _write(sysdir / name, span)
    _write(sysdir / "offline", "")
    _write(sysdir / "kernel_max", "511")
    khz = str(int(board.ghz * 1e6))
    for cpu in range(CORES):
        c = sysdir / f"cpu{cpu}"
        _write(c / "online", "1")
        _write(c / "cpufreq" / "cpuinfo_max_freq", khz)
        _write(c / "cpufreq" / "cpuinfo_min_freq", "600000" if board_key == "pi4" else "1500000")
        topo = {
            "physical_package_id": "0",
            "cluster_id": "0",
            "core_id": str(cpu),
            "cluster_cpus_list": span,
            "core_siblings_list": span,
            "package_cpus_list": span,
            "core_cpus_list": str(cpu),
            "thread_siblings_list": str(cpu),
        }
        for key, value in topo.items():
            _write(c / "topology" / key, value)
        for i, cache in enumerate(board.caches):
            d = c / "cache" / f"index{i}"
            _write(d / "level", str(cache.level))
            _write(d / "type", cache.kind)
            _write(d / "size", f"{cache.size_kb}K")
            _write(d / "ways_of_associativity", str(cache.ways))
            _write(d / "coherency_line_size", "64")
            _write(d / "number_of_sets", str(cache.size_kb * 1024 // 64 // cache.ways))
            _write(d / "shared_cpu_list", str(cpu) if cache.shared == "self" else cache.shared)
    return board


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("board", choices=sorted(BOARDS))
    args = ap.parse_args()
    board = write_board(args.root, args.board)
    print(board.qemu_cpu)


if __name__ == "__main__":
    main()
