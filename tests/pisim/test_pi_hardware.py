"""The fake board tree is what makes XNNPACK pick a Pi's kernels under qemu: a wrong MIDR
here silently tests the wrong code path (a Cortex-A76 part enables dot-product kernels)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pisim.pi_hardware import BOARDS, write_board


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    (tmp_path / "usr").mkdir()
    return tmp_path


def _cpuinfo(root: Path) -> dict[str, set[str]]:
    fields: dict[str, set[str]] = {}
    for line in (root / "proc" / "cpuinfo").read_text().splitlines():
        if ":" in line:
            key, value = (part.strip() for part in line.split(":", 1))
            fields.setdefault(key, set()).add(value)
    return fields


@pytest.mark.parametrize(("board", "part", "qemu_cpu", "dot"), [
    ("pi4", "0xd08", "cortex-a72", False),
    ("pi5", "0xd0b", "cortex-a76", True),
])
def test_board_tree_names_the_real_cpu(root: Path, board: str, part: str, qemu_cpu: str, dot: bool) -> None:
    spec = write_board(root, board)
    info = _cpuinfo(root)
    assert info["processor"] == {"0", "1", "2", "3"}
    assert info["CPU implementer"] == {"0x41"}
    assert info["CPU part"] == {part}
    assert ("asimddp" in next(iter(info["Features"])).split()) is dot
    assert spec.qemu_cpu == qemu_cpu
    cpu = root / "sys" / "devices" / "system" / "cpu"
    assert (cpu / "possible").read_text().strip() == "0-3"
    assert (cpu / "cpu3" / "cpufreq" / "cpuinfo_max_freq").read_text().strip() == str(int(spec.ghz * 1e6))
    l1d = cpu / "cpu0" / "cache" / "index0"
    assert (l1d / "type").read_text().strip() == "Data"
    size_kb = int((l1d / "size").read_text().strip().rstrip("K"))
    sets = int((l1d / "number_of_sets").read_text())
    ways = int((l1d / "ways_of_associativity").read_text())
    assert sets * ways * 64 == size_kb * 1024


def test_switching_boards_leaves_nothing_of_the_previous_one(root: Path) -> None:
    write_board(root, "pi5")  # four cache levels' worth of files, including an L3
    write_board(root, "pi4")
    assert _cpuinfo(root)["CPU part"] == {"0xd08"}
    caches = sorted(p.name for p in (root / "sys/devices/system/cpu/cpu0/cache").iterdir())
    assert caches == [f"index{i}" for i in range(len(BOARDS["pi4"].caches))]


def test_refuses_an_unknown_board_or_a_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown board 'pi3'.*pi4, pi5"):
        write_board(tmp_path, "pi3")
    with pytest.raises(FileNotFoundError, match="build_rootfs.sh"):
        write_board(tmp_path / "nothing", "pi4")
