"""Command-line conventions shared by `car-detector` (python -m edge) and `python -m training`.

What a new user meets first: every option documented with its default, `--version`, an
unknown or misspelt option named as such (argparse alone reports a missing required option
instead, because it checks those first), and option values refused on the command line in
one line naming the option, rather than as a traceback from deep inside a run.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from edge import __version__
from edge.config import SCALES_CHECK
from edge.runtimes import RUNTIME_CHOICES, RUNTIMES


_HELP_OR_VERSION = frozenset({"-h", "--help", "--version"})


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to every option's help, except where there is no default value
    (None): those options say in their help what happens when they are left out."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """ArgumentParser that reports unknown options before missing required ones and never
    guesses from an abbreviation (`--mod` must not silently mean `--model`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        argv = sys.argv[1:] if args is None else list(args)
        if not _HELP_OR_VERSION.intersection(argv):  # help must show what is required
            self._reject_unknown_options(argv)
        return super().parse_known_args(argv, namespace)

    def _reject_unknown_options(self, argv: list[str]) -> None:
        """A first pass with nothing required, only to find options this parser does not know."""
        required = [a for a in self._actions if a.required]
        for a in required:
            a.required = False
        try:
            _, extras = super().parse_known_args(argv, argparse.Namespace())
        finally:
            for a in required:
                a.required = True
        unknown = [e for e in extras if e.startswith("-") and e != "-"]
        if unknown:
            self.unknown_option(unknown[0].split("=", 1)[0])

    def error(self, message: str) -> NoReturn:
        """One line, naming the option; the usage is one `--help` away."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def unknown_option(self, option: str) -> NoReturn:
        known = [s for a in self._actions for s in a.option_strings]
        close = difflib.get_close_matches(option, known, n=1)
        self.error(f"unknown option {option}" + (f" (did you mean {close[0]}?)" if close else ""))


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")


def probability(text: str) -> float:
    """A score threshold: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def scales(text: str) -> str:
    """Comma-separated pyramid scales, checked like `processing.scales`; returned as given,
    because the commands split it themselves."""
    try:
        values = [float(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants comma-separated numbers such as 1.0,0.5, got {text!r}") from None
    if (problem := SCALES_CHECK(values)) is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def int_list(text: str) -> str:
    """Comma-separated whole numbers >= 1 (thread counts); returned as given."""
    for part in text.split(","):
        try:
            positive_int(part)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"wants comma-separated whole numbers >= 1 such as 1,2, got {text!r}") from None
    return text


def choice_list(choices: Sequence[str]) -> Any:
    """A type function for comma-separated names out of `choices`; returns the text as given
    ("" passes: the commands read it as "all of them")."""

    def check(text: str) -> str:
        bad = [p for p in text.split(",") if p not in choices] if text else []
        if bad:
            raise argparse.ArgumentTypeError(f"{bad[0]!r} is not one of {', '.join(choices)}")
        return text

    return check


RUNTIME_NAMES = tuple(RUNTIMES)  # for lists of concrete runtimes (no "auto")
__all__ = ["RUNTIME_CHOICES", "RUNTIME_NAMES", "HelpFormatter", "Parser", "add_version", "choice_list",
           "int_list", "positive_int", "probability", "scales"]
