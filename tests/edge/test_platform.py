"""PlatformProbe: SoC temperature and throttling from vcgencmd, the thermal file, or nothing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edge.platform import PlatformProbe
from tests.fakes.vcgencmd import VcgencmdRunner, failing_runner

VCGENCMD = "/usr/bin/vcgencmd"


def thermal_file(tmp_path: Path, millideg: str = "51234\n") -> Path:
    p = tmp_path / "temp"
    p.write_text(millideg)
    return p


def test_parses_vcgencmd_output(tmp_path: Path) -> None:
    runner = VcgencmdRunner()
    probe = PlatformProbe(runner=runner, vcgencmd=VCGENCMD, thermal=tmp_path / "absent")
    assert probe.temperature_c() == pytest.approx(48.3)
    assert probe.throttled() == 0x50005
    assert runner.calls == [[VCGENCMD, "measure_temp"], [VCGENCMD, "get_throttled"]]
    assert probe.readings() == {"soc_temp_c": pytest.approx(48.3), "throttled": 0x50005}


def test_throttled_zero_is_reported_not_dropped(tmp_path: Path) -> None:
    probe = PlatformProbe(runner=VcgencmdRunner(temp="61.0", throttled="0x0"), vcgencmd=VCGENCMD,
                          thermal=tmp_path / "absent")
    assert probe.readings() == {"soc_temp_c": 61.0, "throttled": 0}


def test_vcgencmd_preferred_over_thermal_file(tmp_path: Path) -> None:
    probe = PlatformProbe(runner=VcgencmdRunner(), vcgencmd=VCGENCMD, thermal=thermal_file(tmp_path))
    assert probe.temperature_c() == pytest.approx(48.3)


def test_without_vcgencmd_falls_back_to_thermal_file(tmp_path: Path) -> None:
    def must_not_run(cmd: list[str]) -> str:
        raise AssertionError(f"ran {cmd} although vcgencmd is absent")

    probe = PlatformProbe(runner=must_not_run, vcgencmd="", thermal=thermal_file(tmp_path))
    assert probe.temperature_c() == pytest.approx(51.234)
    assert probe.throttled() is None
    assert probe.readings() == {"soc_temp_c": pytest.approx(51.234)}


def test_failing_vcgencmd_falls_back_to_thermal_file(tmp_path: Path) -> None:
    probe = PlatformProbe(runner=failing_runner, vcgencmd=VCGENCMD, thermal=thermal_file(tmp_path, "47000\n"))
    assert probe.readings() == {"soc_temp_c": 47.0}


@pytest.mark.parametrize("garbage", ["", "temp=.'C\n", "temp=\n", "hello\n"])
def test_unparseable_output_never_raises(tmp_path: Path, garbage: str) -> None:
    probe = PlatformProbe(runner=lambda cmd: garbage, vcgencmd=VCGENCMD, thermal=tmp_path / "absent")
    assert probe.readings() == {}


def test_negative_temperature_parses(tmp_path: Path) -> None:
    probe = PlatformProbe(runner=VcgencmdRunner(temp="-4.5"), vcgencmd=VCGENCMD, thermal=tmp_path / "absent")
    assert probe.temperature_c() == pytest.approx(-4.5)


def test_nothing_available_gives_empty_readings(tmp_path: Path) -> None:
    probe = PlatformProbe(vcgencmd="", thermal=tmp_path / "no-such-file")
    assert probe.readings() == {}
    bad = tmp_path / "bad"
    bad.write_text("not a number\n")
    assert PlatformProbe(vcgencmd="", thermal=bad).readings() == {}


def test_default_runner_runs_a_real_executable(tmp_path: Path) -> None:
    """The real subprocess path: an executable printing vcgencmd's output, then one that fails."""
    good = tmp_path / "vcgencmd"
    good.write_text(
        "#!/bin/sh\n"
        "case \"$1\" in\n"
        "  measure_temp) echo \"temp=55.1'C\" ;;\n"
        "  get_throttled) echo 'throttled=0x4' ;;\n"
        "  *) echo 'error=1 error_msg=\"Command not registered\"'; exit 255 ;;\n"
        "esac\n"
    )
    good.chmod(good.stat().st_mode | stat.S_IXUSR)
    assert PlatformProbe(vcgencmd=str(good), thermal=tmp_path / "absent").readings() == {
        "soc_temp_c": pytest.approx(55.1), "throttled": 4}

    bad = tmp_path / "vcgencmd-broken"
    bad.write_text("#!/bin/sh\necho 'VCHI initialization failed' >&2\nexit 255\n")
    bad.chmod(bad.stat().st_mode | stat.S_IXUSR)
    assert PlatformProbe(vcgencmd=str(bad), thermal=thermal_file(tmp_path, "40500\n")).readings() == {
        "soc_temp_c": pytest.approx(40.5)}

    missing = PlatformProbe(vcgencmd=str(tmp_path / "not-installed"), thermal=tmp_path / "absent")
    assert missing.readings() == {}
