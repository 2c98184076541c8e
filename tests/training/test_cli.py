"""`python -m training` options: help with defaults, --version, unknown and bad values named.

In process: building the parser imports no TensorFlow (the commands import it lazily)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import edge
from tests.edge.test_cli import undocumented
from training.cli import build_parser, main
from training.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return int(exc.value.code or 0), capsys.readouterr().err


def test_every_option_has_help_with_its_default() -> None:
    assert undocumented(build_parser()) == []


def test_every_subcommand_parses_with_its_defaults() -> None:
    parser = build_parser()
    assert parser.parse_args(["train"]).epochs == TrainConfig.epochs
    assert parser.parse_args(["data"]).dest == "data"
    assert parser.parse_args(["evaluate", "--model", "m"]).threshold is None
    assert parser.parse_args(["finetune", "--base", "b", "--data", "d"]).holdout == 0.25
    assert parser.parse_args(["finetune", "--base", "b", "--data", "d"]).holdout_gap == 0


def test_version() -> None:
    r = subprocess.run([sys.executable, "-m", "training", "--version"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"python -m training {edge.__version__}"


def test_unknown_option_is_named_before_missing_required(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(capsys, "evaluate", "--modle", "x")
    assert code == 2 and "unknown option --modle (did you mean --model?)" in err


@pytest.mark.parametrize("argv,option", [
    (["evaluate", "--model", "m", "--threshold", "2"], "--threshold"),
    (["evaluate", "--model", "m", "--runtime", "gpu"], "--runtime"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--classes", "busy"], "--classes"),
    (["finetune", "--base", "b", "--data", "d", "--holdout-gap", "-1"], "--holdout-gap"),
])
def test_bad_values_are_one_line_errors_naming_the_option(
        capsys: pytest.CaptureFixture[str], argv: list[str], option: str) -> None:
    code, err = run_main(capsys, *argv)
    assert code == 2 and f"argument {option}" in err and err.strip().count("\n") == 0, err
