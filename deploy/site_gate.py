"""May a fine-tuned model replace the one a Pi runs? Run on the workstation by deploy.sh
(and, per host, by the fleet playbook) before anything is built or copied.

    python deploy/site_gate.py MODEL_DIR
        prints "site" when MODEL_DIR/report.json has a `site` section (a fine-tune from
        `python -m training finetune`), "none" otherwise: only then is the Pi asked which
        model it runs, so a plain model deploys exactly as before.
    python deploy/site_gate.py MODEL_DIR --installed FILE [--pi NAME] [--force]
        FILE (or - for stdin) is the installed model's manifest.json as the Pi printed it,
        empty when nothing is installed. Prints the decision.

The report compares the fine-tune with ONE model, its base (`site.base_sha256`), on the
site's held-out frames. So the decision depends on what the Pi runs:
  - nothing, or this very model (a redeploy): nothing to compare, go;
  - the base: refused when the fine-tune is worse there. Worse means a lower AP50, or the
    same AP50 with more false alarms per hour: a site that gains nothing in detection must
    not pay for it in alarms. A higher AP50 goes, whatever the false alarms (the report's
    thresholds are each model's own, and AP50 is the measure the fine-tune is made for);
  - any other model: the report cannot say whether the fine-tune beats it: refused.
--force (FORCE=1 make deploy) turns a refusal into a warning. A null AP50 (no car in the
held-out frames) counts as 0, as in the report's ap50_gain_points.

Exit status: 0 go; 8 refused; 2 bad input (no manifest sha256, a malformed `site` section).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

GO, BAD_INPUT, REFUSED = 0, 2, 8


class BadInput(Exception):
    """A report or manifest this script cannot use; the message names the file and field."""


@dataclass(frozen=True)
class Figures:
    """One model's figures on the site's held-out frames (report.json site.base/finetuned)."""

    ap50: float  # null in the report (no car in the frames) is read as 0
    false_alarms_per_hour: float

    def text(self) -> str:
        return f"AP50 {self.ap50:.3f}, {self.false_alarms_per_hour:g} false alarms/hour"


@dataclass(frozen=True)
class Site:
    """The `site` section of a fine-tuned run's report.json: what the decision needs."""

    name: str
    held_out_frames: int
    base_run: str
    base_sha256: str
    base: Figures
    finetuned: Figures

    def worse_than_base(self) -> bool:
        """Lower AP50, or no AP50 gain bought with more false alarms per hour."""
        if self.finetuned.ap50 != self.base.ap50:
            return self.finetuned.ap50 < self.base.ap50
        return self.finetuned.false_alarms_per_hour > self.base.false_alarms_per_hour

    def comparison(self) -> str:
        return (f"on {self.held_out_frames} held-out frames of site {self.name!r}: installed base "
                f"{self.base.text()}; fine-tuned {self.finetuned.text()}")


@dataclass(frozen=True)
class Decision:
    refused: bool
    message: str
    todo: str = ""


def _number(value: object, where: str, *, null_is_zero: bool = False) -> float:
    if value is None and null_is_zero:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInput(f"field {where} = {value!r} must be a number")
    return float(value)


def _figures(section: dict, key: str, where: str) -> Figures:
    node = section.get(key)
    if not isinstance(node, dict):
        raise BadInput(f"field {where}.{key} is missing or not an object")
    return Figures(ap50=_number(node.get("ap50"), f"{where}.{key}.ap50", null_is_zero=True),
                   false_alarms_per_hour=_number(node.get("false_alarms_per_hour"),
                                                 f"{where}.{key}.false_alarms_per_hour"))


def _text(section: dict, key: str, where: str) -> str:
    value = section.get(key)
    if not isinstance(value, str) or not value:
        raise BadInput(f"field {where}.{key} = {value!r} must be a non-empty string")
    return value


def read_site(model_dir: Path) -> Site | None:
    """The report's `site` section, or None when the run is not a fine-tune (no report.json,
    or one without `site`)."""
    report = model_dir / "report.json"
    if not report.is_file():
        return None
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{report} is not valid JSON: {exc}") from exc
    section = data.get("site") if isinstance(data, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict):
        raise BadInput(f"{report}: field site must be an object")
    where = "site"
    frames = _number(section.get("held_out_frames"), f"{where}.held_out_frames")
    return Site(name=_text(section, "site", where), held_out_frames=int(frames),
                base_run=str(section.get("base_run", "")), base_sha256=_text(section, "base_sha256", where),
                base=_figures(section, "base", where), finetuned=_figures(section, "finetuned", where))


def int8_sha256(manifest: dict, where: str) -> str:
    """models.int8.sha256 of a manifest: the identity of the model the daemon runs."""
    sha = manifest.get("models", {}).get("int8", {}).get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(sha, str) or not sha:
        raise BadInput(f"{where} has no models.int8.sha256")
    return sha


def decide(site: Site, new_sha: str, installed_sha: str | None, pi: str, command: str) -> Decision:
    """The rule in the module docstring, with the message a user acts on (`command`: how
    this deploy was started, to say how to force it)."""
    if installed_sha is None:
        return Decision(False, f"nothing installed on {pi} yet: nothing to compare the site {site.name!r} fine-tune with")
    if installed_sha == new_sha:
        return Decision(False, f"{pi} already runs this model ({new_sha[:12]}): nothing to compare")
    if installed_sha == site.base_sha256:
        if site.worse_than_base():
            return Decision(True, f"this fine-tune is worse than the model {pi} runs (its base, {installed_sha[:12]}) "
                                  f"{site.comparison()}",
                            "keep the installed model and fine-tune again (more or corrected labels of the site), "
                            f"or ship it anyway: FORCE=1 {command}")
        return Decision(False, f"{pi} runs this fine-tune's base ({installed_sha[:12]}); not worse "
                               f"{site.comparison()}")
    return Decision(True, f"{pi} runs model {installed_sha[:12]}, which is neither this fine-tune's base "
                          f"({site.base_sha256[:12]}, run {site.base_run or 'unknown'}) nor this model: its report "
                          f"compares it only with that base on site {site.name!r} ({site.held_out_frames} held-out "
                          f"frames), so it cannot say whether it is better than what {pi} runs",
                    "deploy the base first, or fine-tune from the installed model's run, or ship it anyway: "
                    f"FORCE=1 {command}")


def installed_sha_from(text: str, where: str) -> str | None:
    """The installed model's sha256 from the manifest text the Pi printed (empty: none)."""
    if not text.strip():
        return None
    try:
        return int8_sha256(json.loads(text), where)
    except ValueError as exc:
        raise BadInput(f"{where} is not valid JSON: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--installed", help="the installed manifest.json (- for stdin; empty: nothing installed)")
    parser.add_argument("--pi", default="the Pi", help="the target, for messages")
    parser.add_argument("--force", action="store_true", help="deploy even when refused (FORCE=1)")
    parser.add_argument("--command", default="make deploy", help="how this deploy was started, for messages")
    args = parser.parse_args(argv)
    model = args.model_dir
    try:
        site = read_site(model)
        if args.installed is None:
            print("site" if site is not None else "none")
            return GO
        if site is None:
            print(f"    {model} is not a site fine-tune (no site section in report.json): nothing to compare")
            return GO
        new_sha = int8_sha256(json.loads((model / "manifest.json").read_text()), f"{model}/manifest.json")
        text = sys.stdin.read() if args.installed == "-" else Path(args.installed).read_text()
        decision = decide(site, new_sha, installed_sha_from(text, f"{args.pi}'s installed manifest.json"), args.pi,
                          args.command)
    except (BadInput, OSError, ValueError) as exc:
        print(f"ERROR: MODEL={model}: {exc}\n  what to do: fix or remove report.json's site section "
              "(`python -m training finetune` writes it), or point MODEL= at another run", file=sys.stderr)
        return BAD_INPUT
    if not decision.refused:
        print(f"    {decision.message}")
        return GO
    if args.force:
        print(f"WARNING: {decision.message}\n  FORCE=1: deploying it anyway", file=sys.stderr)
        return GO
    print(f"ERROR: refused: {decision.message}\n  what to do: {decision.todo}", file=sys.stderr)
    return REFUSED


if __name__ == "__main__":
    sys.exit(main())
