"""`make deploy` of a site fine-tune (deploy/site_gate.py, called by deploy.sh): refused when
its report shows it worse than the model the Pi runs on the site's held-out frames, or when
the report cannot say (the Pi runs another model); FORCE=1 ships it anyway.

The end-to-end tests deploy through the real sshd "Pi" of conftest.py, into the session's
`deployed` root, whose installed model is the trained CI run. A fine-tune is that run copied,
with a report.json `site` section written in and, where it must really be installed, its
int8 model made a different file (trailing bytes, which the TFLite loader ignores; the
manifest's sha256 and size follow) so the Pi sees a new model. Every test that installs one
puts the base back, so the other deploy tests find the state they expect.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.site_gate import Figures, Site, decide
from tests.deploy.conftest import REPO, Deployment, explain, snapshot
from tests.deploy.test_deploy import deploy_tmp_dirs, new_calls

SITE = "driveway"
FRAMES = 120
OTHER_SHA = "ab" * 32


def int8_sha(model_dir: Path) -> str:
    return json.loads((model_dir / "manifest.json").read_text())["models"]["int8"]["sha256"]


def site_section(base_sha: str, base_ap50: float | None, ft_ap50: float | None,
                 base_fah: float = 4.0, ft_fah: float = 4.0) -> dict:
    """A report.json `site` section as `python -m training finetune` writes it."""
    def figures(ap50: float | None, fah: float) -> dict:
        return {"ap50": ap50, "presence_accuracy": 0.9, "false_alarms": int(fah), "false_alarms_per_hour": fah,
                "precision": 0.8, "recall": 0.7, "threshold": 0.5}

    gain = round(((ft_ap50 or 0) - (base_ap50 or 0)) * 100, 2)
    return {"site": SITE, "held_out_frames": FRAMES, "fps": 15.0, "base_run": "/runs/base", "base_sha256": base_sha,
            "base": figures(base_ap50, base_fah), "finetuned": figures(ft_ap50, ft_fah),
            "ap50_gain_points": gain, "default_sets": {}, "worst_default_drop_points": 0.0}


def finetune(src: Path, dest: Path, site: dict | None, *, new_model: bool = True) -> Path:
    """A copy of run `src` with report.json's `site` section set (None: removed) and, with
    `new_model`, an int8 model that differs from src's by its bytes (and so its sha256)."""
    shutil.copytree(src, dest)
    report = dest / "report.json"
    data = json.loads(report.read_text()) if report.exists() else {}
    data.pop("site", None)
    if site is not None:
        data["site"] = site
    report.write_text(json.dumps(data, indent=2))
    if new_model:
        manifest = json.loads((dest / "manifest.json").read_text())
        entry = manifest["models"]["int8"]
        tflite = dest / entry["file"]
        payload = tflite.read_bytes() + b"\0" * 16
        tflite.write_bytes(payload)
        entry["sha256"], entry["size_bytes"] = hashlib.sha256(payload).hexdigest(), len(payload)
        (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dest


@pytest.fixture
def restore_base(deployed: Deployment) -> Iterator[None]:
    """Put the session's base model back after a test that installed a fine-tune."""
    yield
    if int8_sha(deployed.current_model) != int8_sha(deployed.model_dir):
        back = deployed.deploy()
        assert back.returncode == 0, "could not put the base model back:\n" + explain(back)


# ---------------------------------------------------------------------------- the rule

def site(base_ap50: float, ft_ap50: float, base_fah: float = 4.0, ft_fah: float = 4.0) -> Site:
    return Site(name=SITE, held_out_frames=FRAMES, base_run="/runs/base", base_sha256="b" * 64,
                base=Figures(base_ap50, base_fah), finetuned=Figures(ft_ap50, ft_fah))


@pytest.mark.parametrize(("base_ap50", "ft_ap50", "base_fah", "ft_fah", "refused"), [
    (0.41, 0.40, 4.0, 1.0, True),    # lower AP50: refused even with fewer false alarms
    (0.41, 0.41, 4.0, 6.0, True),    # no AP50 gain, more false alarms: refused
    (0.41, 0.41, 4.0, 4.0, False),   # no change at all: not worse
    (0.41, 0.41, 4.0, 2.0, False),   # same AP50, fewer false alarms
    (0.41, 0.80, 4.0, 6.0, False),   # AP50 gain: goes, whatever the false alarms
])
def test_worse_means_lower_ap50_or_more_false_alarms_for_no_gain(base_ap50: float, ft_ap50: float, base_fah: float,
                                                                   ft_fah: float, refused: bool) -> None:
    got = decide(site(base_ap50, ft_ap50, base_fah, ft_fah), "n" * 64, "b" * 64, "pi@cam", "make deploy")
    assert got.refused is refused, got.message


def test_the_rule_depends_on_what_the_pi_runs() -> None:
    worse = site(0.41, 0.30)
    assert not decide(worse, "n" * 64, None, "pi@cam", "make deploy").refused, "first install"
    assert not decide(worse, "n" * 64, "n" * 64, "pi@cam", "make deploy").refused, "a redeploy"
    other = decide(site(0.41, 0.90), "n" * 64, "c" * 64, "pi@cam", "make deploy PI=pi@cam")
    assert other.refused and "cannot say" in other.message and "FORCE=1 make deploy PI=pi@cam" in other.todo


# ---------------------------------------------------------------------------- end to end

def test_worse_finetune_of_the_installed_base_is_refused_and_nothing_changes(deployed: Deployment,
                                                                             tmp_path: Path) -> None:
    model = finetune(deployed.model_dir, tmp_path / "ft", site_section(int8_sha(deployed.current_model), 0.41, 0.38))
    before, calls, tmp_before = snapshot(deployed.root), len(deployed.pi.systemctl_calls()), deploy_tmp_dirs()
    stage = REPO / "build" / "deploy"
    stage_before = snapshot(stage) if stage.exists() else None

    for dry in (None, "1"):  # DRY_RUN=1 shows the same decision
        result = deployed.deploy(MODEL=str(model), DRY_RUN=dry)
        assert result.returncode == 8, explain(result)
        err = result.stderr
        assert "refused" in err and "worse" in err, explain(result)
        for part in ("AP50 0.410", "AP50 0.380", f"site {SITE!r}", f"{FRAMES} held-out frames",
                     f"FORCE=1 make deploy PI={deployed.pi.pi} MODEL={model}"):
            assert part in err, f"{part!r} missing from the refusal:\n{err}"

    assert snapshot(deployed.root) == before
    assert new_calls(deployed, calls) == []
    assert deploy_tmp_dirs() == tmp_before, "nothing is copied to the Pi"
    assert (snapshot(stage) if stage.exists() else None) == stage_before, "nothing is built"


def test_force_ships_a_worse_finetune(deployed: Deployment, tmp_path: Path, restore_base: None) -> None:
    model = finetune(deployed.model_dir, tmp_path / "ft", site_section(int8_sha(deployed.current_model), 0.41, 0.38))
    result = deployed.deploy(MODEL=str(model), FORCE="1")
    assert result.returncode == 0, explain(result)
    assert "WARNING" in result.stderr and "FORCE=1: deploying it anyway" in result.stderr
    assert int8_sha(deployed.current_model) == int8_sha(model), "the fine-tune is what runs now"


def test_better_finetune_of_the_installed_base_goes_through(deployed: Deployment, tmp_path: Path,
                                                            restore_base: None) -> None:
    model = finetune(deployed.model_dir, tmp_path / "ft",
                     site_section(int8_sha(deployed.current_model), 0.41, 0.86, base_fah=4.0, ft_fah=1.5))
    result = deployed.deploy(MODEL=str(model))
    assert result.returncode == 0, explain(result)
    assert "runs this fine-tune's base" in result.stdout and "not worse" in result.stdout
    assert "AP50 0.860" in result.stdout
    assert int8_sha(deployed.current_model) == int8_sha(model)
    assert (deployed.current_model / "model_int8.tflite").read_bytes() == (model / "model_int8.tflite").read_bytes()

    again = deployed.deploy(MODEL=str(model))  # now installed: a redeploy, nothing to compare
    assert again.returncode == 0, explain(again)
    assert "already runs this model" in again.stdout and "already installed" in again.stdout


def test_finetune_of_another_model_is_refused_unless_forced(deployed: Deployment, tmp_path: Path) -> None:
    model = finetune(deployed.model_dir, tmp_path / "ft", site_section(OTHER_SHA, 0.20, 0.90))
    before, calls = snapshot(deployed.root), len(deployed.pi.systemctl_calls())

    refused = deployed.deploy(MODEL=str(model))
    assert refused.returncode == 8, explain(refused)
    installed = int8_sha(deployed.current_model)
    assert f"runs model {installed[:12]}" in refused.stderr and OTHER_SHA[:12] in refused.stderr
    assert "cannot say whether it is better" in refused.stderr and "FORCE=1 make deploy" in refused.stderr

    forced = deployed.deploy(MODEL=str(model), FORCE="1", DRY_RUN="1")
    assert forced.returncode == 0, explain(forced)
    assert "FORCE=1: deploying it anyway" in forced.stderr and "nothing was changed" in forced.stdout
    assert snapshot(deployed.root) == before
    assert new_calls(deployed, calls) == []


def test_first_install_of_a_finetune_has_nothing_to_compare(deployed: Deployment, tmp_path: Path) -> None:
    model = finetune(deployed.model_dir, tmp_path / "ft", site_section(OTHER_SHA, 0.41, 0.10), new_model=False)
    empty = tmp_path / "fresh-root"
    empty.mkdir()
    result = deployed.deploy(MODEL=str(model), PI_ROOT=str(empty), DRY_RUN="1")
    assert result.returncode == 0, explain(result)
    assert "nothing installed on" in result.stdout and "nothing to compare" in result.stdout


def test_model_without_a_site_section_deploys_as_before(deployed: Deployment, tmp_path: Path) -> None:
    model = finetune(deployed.model_dir, tmp_path / "plain", None, new_model=False)
    result = deployed.deploy(MODEL=str(model))
    assert result.returncode == 0, explain(result)
    assert "already installed" in result.stdout
    assert "Compare the site fine-tune" not in result.stdout, "no extra round trip for a plain model"


def test_malformed_site_section_is_bad_input_naming_the_field(deployed: Deployment, tmp_path: Path) -> None:
    section = site_section(int8_sha(deployed.current_model), 0.41, 0.50)
    del section["finetuned"]["false_alarms_per_hour"]
    model = finetune(deployed.model_dir, tmp_path / "ft", section, new_model=False)
    before = snapshot(deployed.root)
    result = deployed.deploy(MODEL=str(model))
    assert result.returncode == 2, explain(result)
    assert "site.finetuned.false_alarms_per_hour" in result.stderr and "what to do" in result.stderr
    assert snapshot(deployed.root) == before

