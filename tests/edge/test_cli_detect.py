"""`edge detect` as a new user meets it, on real files: any-size pictures, bombs, huge photos,
folders, globs, clips, unreadable files and `--save`.

One batch runs in a fresh process (as a user runs it) and several tests read its lines; the
memory bound runs alone, under a wrapper that reports only its child's peak RSS.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.cli import main
from edge.pictures import MAX_PIXELS, MAX_SIDE
from edge.snapshot import BOX_COLOUR, ZONE_COLOUR

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"image", "width", "height", "car", "top_score", "boxes"}
BOX_FIELDS = {"x", "y", "width", "height", "score"}


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG of width x height, all black, streamed row by row: a few KB on disk that
    claims width*height pixels (the decompression bomb of the issue), never held in memory here."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A grey picture with some dark and light blocks, so the heat map is not flat."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w), 128, np.uint8)
    for _ in range(6):
        bh, bw = rng.integers(max(2, h // 8), max(3, h // 3)), rng.integers(max(2, w // 8), max(3, w // 3))
        y, x = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
        img[y : y + bh, x : x + bw] = rng.integers(0, 256)
    return img


def write_config(path: Path, *, crop: list[int] | None = None) -> Path:
    """A daemon config whose zones `--save` draws: one large zone, and one only 8 px wide (under
    a pixel once scaled onto a 20x12 picture)."""
    lines = ['[source]', 'kind = "synthetic"', "width = 320", "height = 240"]
    if crop:
        lines += ["[processing]", f"crop = {json.dumps(crop)}"]
    lines += ["[zones.drive]", "x = 0", "y = 60", "width = 160", "height = 120",
              "[zones.tiny]", "x = 300", "y = 200", "width = 8", "height = 8"]
    path.write_text("\n".join(lines) + "\n")
    return path


def detect(*args: str, timeout: float = 240) -> tuple[int, list[dict], str]:
    r = subprocess.run([sys.executable, "-m", "edge", "detect", *args], cwd=ROOT, check=False,
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, [json.loads(line) for line in r.stdout.splitlines()], r.stderr


class Batch:
    def __init__(self, code: int, lines: list[dict], stderr: str, inputs: dict[str, Path], save: Path) -> None:
        self.code, self.lines, self.stderr, self.inputs, self.save = code, lines, stderr, inputs, save

    def line(self, name: str) -> dict:
        want = str(self.inputs[name])
        (found,) = [x for x in self.lines if x["image"] == want]
        return found


@pytest.fixture(scope="module")
def batch(trained_model_dir, video_path, tmp_path_factory) -> Batch:
    """One `edge detect` run over every kind of input, good and bad, in this order."""
    d = tmp_path_factory.mktemp("detect")
    inputs: dict[str, Path] = {}
    inputs["small"] = d / "small.png"
    Image.fromarray(textured(12, 20)).save(inputs["small"])  # 20x12: far smaller than the model's input
    inputs["bomb"] = bomb_png(d / "bomb.png", 14000, 14000)  # Pillow itself refuses this one
    inputs["big_claim"] = bomb_png(d / "big_claim.png", 11000, 11000)  # over MAX_PIXELS, under Pillow's limit
    inputs["bad"] = d / "bad.png"
    inputs["bad"].write_bytes(b"not a picture at all")
    inputs["flat"] = d / "flat.png"
    Image.fromarray(np.full((240, 320), 128, np.uint8)).save(inputs["flat"])
    folder = d / "folder"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(textured(100, 150, 1)).save(folder / "b.jpg")
    Image.fromarray(textured(64, 64, 2)).save(folder / "sub" / "a.png")
    (folder / "notes.txt").write_text("not a picture: skipped by suffix")
    (folder / "dir.jpg").mkdir()  # a folder with a picture's name: not read as a picture
    globbed = d / "globbed"
    globbed.mkdir()
    for i in range(2):
        Image.fromarray(textured(48, 80, 3 + i)).save(globbed / f"cam{i}.jpg")
    Image.fromarray(textured(48, 80, 9)).save(globbed / "other.png")
    save = d / "saved"
    cfg = write_config(d / "config.toml")
    argv = ["--model", str(trained_model_dir), "--threshold", "0", "--save", str(save), "--config", str(cfg),
            str(inputs["small"]), str(inputs["bomb"]), str(inputs["big_claim"]), str(inputs["bad"]),
            str(d / "missing.jpg"), str(inputs["flat"]), str(folder), str(globbed / "cam*.jpg"),
            str(d / "nothing*.jpg"), str(video_path), "--every", "100"]
    code, lines, err = detect(*argv)
    inputs.update({"folder": folder, "globbed": globbed, "missing": d / "missing.jpg",
                   "no_match": d / "nothing*.jpg", "video": video_path})
    return Batch(code, lines, err, inputs, save)


def test_batch_goes_on_past_bad_inputs_and_exits_1(batch: Batch) -> None:
    assert batch.code == 1, batch.stderr
    assert "Traceback" not in batch.stderr and "DecompressionBomb" not in batch.stderr
    errors = [x["image"] for x in batch.lines if "error" in x]
    assert errors == [str(batch.inputs[k]) for k in ("bomb", "big_claim", "bad", "missing", "no_match")]
    good = [x for x in batch.lines if "error" not in x]
    assert len(good) == 1 + 1 + 2 + 2 + 5  # small, flat, folder, glob, 5 video frames
    for x in good:
        assert FIELDS <= set(x) and isinstance(x["car"], bool) and 0.0 <= x["top_score"] <= 1.0
        assert x["car"] == bool(x["boxes"])
        for b in x["boxes"]:
            assert set(b) == BOX_FIELDS
            assert 0 <= b["x"] and b["x"] + b["width"] <= x["width"] + 1e-6
            assert 0 <= b["y"] and b["y"] + b["height"] <= x["height"] + 1e-6


def test_picture_smaller_than_the_model_is_padded_and_answered(batch: Batch) -> None:
    small = batch.line("small")
    assert "error" not in small and (small["width"], small["height"]) == (20, 12)
    assert small["boxes"], "threshold 0: every heat peak is a box, so a padded picture must give some"


@pytest.mark.parametrize("name,claim", [("bomb", "196 M pixels"), ("big_claim", "11000x11000 = 121 M pixels")])
def test_decompression_bomb_is_refused_naming_the_limit(batch: Batch, name: str, claim: str) -> None:
    err = batch.line(name)["error"]
    assert claim in err and f"over the {MAX_PIXELS / 1e6:.0f} M pixel limit" in err, err
    assert set(batch.line(name)) == {"image", "error"}


def test_unreadable_and_missing_inputs_are_error_lines(batch: Batch) -> None:
    assert batch.line("bad")["error"].startswith("cannot read picture")
    assert batch.line("missing")["error"] == "no such file or folder"
    assert batch.line("no_match")["error"] == "no file matches this pattern"


def test_folders_recurse_in_name_order_and_globs_expand(batch: Batch) -> None:
    folder, globbed = batch.inputs["folder"], batch.inputs["globbed"]
    labels = [x["image"] for x in batch.lines]
    assert [x for x in labels if x.startswith(str(folder))] == [str(folder / "b.jpg"), str(folder / "sub" / "a.png")]
    assert [x for x in labels if x.startswith(str(globbed))] == [str(globbed / "cam0.jpg"), str(globbed / "cam1.jpg")]
    assert (batch.line("flat")["width"], batch.line("flat")["height"]) == (320, 240)
    assert not any(x.endswith(("dir.jpg", "notes.txt")) for x in labels)


def test_video_clip_every_nth_frame(batch: Batch) -> None:
    frames = [x for x in batch.lines if x["image"].startswith(str(batch.inputs["video"]))]
    assert [x["image"].rsplit("#", 1)[1] for x in frames] == [f"frame={i}" for i in range(0, 500, 100)]
    assert all((x["width"], x["height"]) == (320, 240) for x in frames)


def test_save_writes_one_annotated_picture_per_answer_with_zones(batch: Batch) -> None:
    saved = sorted(batch.save.iterdir())
    good = [x for x in batch.lines if "error" not in x]
    assert len(saved) == len(good)
    assert all(p.suffix == ".jpg" for p in saved)
    (flat,) = [p for p in saved if p.name.endswith("_flat.png.jpg")]
    rgb = np.asarray(Image.open(flat).convert("RGB")).astype(int)
    assert rgb.shape == (240, 320, 3)
    assert is_zone_colour(rgb[60, 80]) and is_zone_colour(rgb[119, 0]), "zone 'drive' edges drawn"
    assert not is_zone_colour(rgb[150, 240]), "outside every zone: untouched"
    green = (rgb[..., 1] > 150) & (rgb[..., 0] < 100) & (rgb[..., 2] < 100)
    assert green.any(), "boxes drawn"
    (small,) = [p for p in saved if p.name.endswith("_small.png.jpg")]
    assert Image.open(small).size == (20, 12)  # the 8 px zone is under a pixel there, and still drawn


def is_zone_colour(px: np.ndarray) -> bool:
    """ZONE_COLOUR is blue; a 1 px line in a JPEG blends with the grey around it."""
    r, _, b = (int(v) for v in px)
    return b - r > 50 and ZONE_COLOUR[2] > ZONE_COLOUR[0]


def test_save_without_config_draws_no_zones_and_maps_zones_through_the_crop(
        trained_model_dir, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pic = tmp_path / "flat.png"
    Image.fromarray(np.full((240, 320), 128, np.uint8)).save(pic)
    code = main(["detect", "--model", str(trained_model_dir), "--threshold", "1", "--save", str(tmp_path / "a"),
                 str(pic)])
    assert code == 0 and json.loads(capsys.readouterr().out)["boxes"] == []
    (plain,) = (tmp_path / "a").iterdir()
    rgb = np.asarray(Image.open(plain).convert("RGB")).astype(int)
    assert np.abs(rgb - 128).max() <= 3, "no zones, no boxes: the picture as read"
    # processing.crop [0, 120, 320, 120] resized to 320x240: zone y=60 is source row 120 + 60/2 = 150.
    cfg = write_config(tmp_path / "crop.toml", crop=[0, 120, 320, 120])
    assert main(["detect", "--model", str(trained_model_dir), "--threshold", "1", "--save", str(tmp_path / "b"),
                 "--config", str(cfg), str(pic)]) == 0
    (cropped,) = (tmp_path / "b").iterdir()
    rgb = np.asarray(Image.open(cropped).convert("RGB")).astype(int)
    assert is_zone_colour(rgb[150, 80]) and not is_zone_colour(rgb[60, 80])
    assert BOX_COLOUR == (0, 255, 0)


def test_huge_picture_is_scaled_on_read_and_answered_in_its_own_pixels(trained_model_dir, tmp_path: Path) -> None:
    """10000x10000 JPEG: decoded at a reduced size (draft) and scaled to MAX_SIDE, so the
    process stays far below the ~1.9 GB a full decode took; boxes come back in the photo's pixels."""
    big = tmp_path / "big.jpg"
    grad = Image.linear_gradient("L").resize((10000, 10000))
    grad.paste(0, (3000, 6000, 5000, 7000))
    grad.save(big, quality=80)
    del grad
    wrapper = ("import json, resource, subprocess, sys\n"
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "print(json.dumps({'rc': r.returncode, 'out': r.stdout, 'err': r.stderr[-2000:],"
               " 'rss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "edge", "detect", "--model", str(trained_model_dir),
           "--threshold", "0", str(big)]
    r = subprocess.run(cmd, cwd=ROOT, check=False, capture_output=True, text=True, timeout=240)
    rep = json.loads(r.stdout)
    assert rep["rc"] == 0, rep["err"]
    assert rep["rss_kb"] < 600 * 1024, f"peak RSS {rep['rss_kb'] / 1024:.0f} MB"
    (line,) = [json.loads(x) for x in rep["out"].splitlines()]
    assert (line["width"], line["height"]) == (10000, 10000)
    assert line["boxes"]
    right = max(b["x"] + b["width"] for b in line["boxes"])
    bottom = max(b["y"] + b["height"] for b in line["boxes"])
    assert max(right, bottom) > 1.2 * MAX_SIDE, "boxes in the photo's pixels, not the read size's"
    assert right <= 10000 + 1e-6 and bottom <= 10000 + 1e-6
