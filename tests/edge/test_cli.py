"""`car-detector` / `python -m edge` as a new user meets it: help, --version, option errors,
check-config. Parser-level checks call main() in process; entry points run as subprocesses."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import edge
from edge.argparsing import HelpFormatter
from edge.cli import build_parser, main
from edge.runtimes import RUNTIME_CHOICES

ROOT = Path(__file__).resolve().parents[2]


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    """Options of every subcommand that lack help, or whose help does not show their default."""
    fmt = HelpFormatter(parser.prog)
    bad = []
    for name, sub in subparsers(parser).items():
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                bad.append(f"{label}: no help")
            elif action.default is not None and "default" not in (fmt._get_help_string(action) or ""):
                bad.append(f"{label}: default {action.default!r} not shown")
            elif action.default is None and action.option_strings and not action.required \
                    and action.type is not None and "without it" not in action.help:
                bad.append(f"{label}: say what happens without it")
    return bad


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_option_has_help_with_its_default() -> None:
    assert undocumented(build_parser()) == []


def test_every_subcommand_parses_with_its_defaults() -> None:
    """argparse runs type functions on string defaults too: every default must pass its own check."""
    parser = build_parser()
    for name, sub in subparsers(parser).items():
        argv = [name]
        for action in sub._actions:
            if action.required:
                argv += ([action.option_strings[0]] if action.option_strings else []) + ["x"]
        args = parser.parse_args(argv)
        assert args.cmd == name


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "bench", "--help")
    assert code == 0 and "(default: 300)" in out and "--runs" in out


@pytest.mark.parametrize("cmd", [
    [sys.executable, "-m", "edge", "--version"],
    [str(Path(sys.executable).parent / "car-detector"), "--version"],
])
def test_version_on_every_entry_point(cmd: list[str]) -> None:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"car-detector {edge.__version__}"


def test_version_has_one_owner() -> None:
    from importlib.metadata import version

    assert version("car-detector") == edge.__version__


def test_unknown_option_is_named_before_missing_required(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "detect", "--modle", "x", "a.png")
    assert code == 2
    assert "unknown option --modle (did you mean --model?)" in err and "required" not in err
    assert err.strip().count("\n") == 0, "one line"


def test_abbreviations_are_not_guessed(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "detect", "--mod", "m", "a.png")
    assert code == 2 and "unknown option --mod" in err
    code, _, err = run_main(capsys, "run", "--max", "3")
    assert code == 2 and "unknown option --max" in err


def test_missing_required_option_still_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "detect", "a.png")
    assert code == 2 and "--model" in err and "required" in err


@pytest.mark.parametrize("argv,option,words", [
    (["--threshold", "1.5"], "--threshold", "between 0 and 1"),
    (["--threshold", "-0.1"], "--threshold", "between 0 and 1"),
    (["--threshold", "high"], "--threshold", "'high'"),
    (["--scales", "1,,0.5"], "--scales", "'1,,0.5'"),
    (["--scales", "1.0,9"], "--scales", "[0.1, 4]"),
    (["--runtime", "gpu"], "--runtime", "'gpu'"),
])
def test_bad_detect_values_are_one_line_errors_naming_the_option(
        capsys: pytest.CaptureFixture[str], argv: list[str], option: str, words: str) -> None:
    code, _, err = run_main(capsys, "detect", "--model", "m", *argv, "a.png")
    assert code == 2
    assert f"argument {option}" in err and words in err, err
    assert err.strip().count("\n") == 0, f"one line: {err!r}"


@pytest.mark.parametrize("argv,option", [
    (["bench", "--model", "m", "--runtimes", "litert,gpu"], "--runtimes"),
    (["bench", "--model", "m", "--threads", "1,two"], "--threads"),
    (["soak", "--model", "m", "--frames", "0"], "--frames"),
    (["run", "--max-frames", "-1"], "--max-frames"),
])
def test_other_bad_values_name_the_option(capsys: pytest.CaptureFixture[str], argv: list[str], option: str) -> None:
    code, _, err = run_main(capsys, *argv)
    assert code == 2 and f"argument {option}" in err, err


def test_runtime_choices_come_from_the_registry() -> None:
    subs = subparsers(build_parser())
    for name in ("preflight", "detect"):
        (rt,) = [a for a in subs[name]._actions if "--runtime" in a.option_strings]
        assert tuple(rt.choices) == RUNTIME_CHOICES


def test_check_config_ok_prints_a_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[source]\nkind = "video"\npath = "/tmp/v.mp4"\n[zones.drive]\nx = 0\ny = 0\nwidth = 10\n'
                   'height = 10\nclassify = true\n[mqtt]\nenabled = true\nhost = "broker"\n')
    code, out, err = run_main(capsys, "check-config", str(cfg))
    assert (code, err) == (0, "")
    assert out.startswith(f"OK {cfg}: ") and out.count("\n") == 1
    assert "video /tmp/v.mp4" in out and "drive (classify)" in out and "mqtt broker:1883" in out


def test_check_config_error_is_one_line_naming_the_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[source]\nfps = 0\n")
    code, out, err = run_main(capsys, "check-config", str(cfg))
    assert code == 1 and out == ""
    assert err.startswith("error: ") and str(cfg) in err and "source.fps must be > 0" in err
    assert err.strip().count("\n") == 0


def test_check_config_subprocess_never_prints_a_traceback(tmp_path: Path) -> None:
    for text in ("[model]\nruntime = auto\n", "[modle]\n", None):
        path = tmp_path / "c.toml"
        if text is None:
            path = tmp_path / "missing.toml"
        else:
            path.write_text(text)
        r = subprocess.run([sys.executable, "-m", "edge", "check-config", str(path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "Traceback" not in r.stderr and str(path) in r.stderr


def test_shipped_config_checks_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "check-config", str(ROOT / "firmware_config" / "config.toml"))
    assert code == 0 and out.startswith("OK ")
