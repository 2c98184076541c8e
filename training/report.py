"""report.json (figures for scripts and CI) and report.md with plots and galleries (for people)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training import artifacts

# (name, op, goal, where the value is in report.json as a path of keys, the runs it scores:
# "" every run, "train" `make train`'s only, "finetune" a fine-tune's only)
TARGETS = [
    ("drone-madison validation AP50 (int8)", ">=", 0.90, ("datasets", "drone-madison", "ap50_int8"), ""),
    ("openimages-vehicles validation car AP50 (int8)", ">=", 0.50, ("datasets", "openimages-vehicles", "ap50_int8"), ""),
    ("gti-vehicles validation presence AUC (int8)", ">=", 0.98, ("datasets", "gti-vehicles", "presence_auc_int8"), ""),
    ("UIUC single-scale EER (int8)", ">=", 0.985, ("uiuc", "single_scale_eer_int8"), ""),
    ("UIUC rescaled multi-scale EER (int8)", ">=", 0.95, ("uiuc", "multi_scale_eer_int8"), ""),
    ("int8 vs float drop, worst dataset (points)", "<=", 1.0, ("int8_drop_points_worst",), ""),
    ("int8 model size (bytes)", "<=", 512 * 1024, ("model", "int8_bytes"), ""),
    ("MACs per 320x240 frame", "<=", 150e6, ("model", "macs_320x240"), ""),
    ("make train seconds (after installation)", "<=", 900, ("total_seconds",), "train"),
    ("fine-tune: site held-out AP50 (int8)", ">=", 0.85, ("site", "finetuned", "ap50"), "finetune"),
    ("fine-tune: AP50 gain over base (points)", ">=", 20, ("site", "ap50_gain_points"), "finetune"),
    ("fine-tune: worst loss on the default validation sets (points)", "<=", 2, ("site", "worst_default_drop_points"),
     "finetune"),
]
# Colours of every annotated picture, explained in each legend.
TRUTH = (0, 200, 0)
PRED = (230, 30, 30)
IGNORE = (240, 200, 0)


def _dig(d: dict[str, Any], path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def build_report(*, cfg, fit, manifest, metrics, drops, uiuc, calibration, latency, total_seconds,
                 site=None) -> dict[str, Any]:
    from training.model import first_layer_params

    sources, history = fit.sources, fit.history
    i8 = manifest.models["int8"]
    datasets: dict[str, Any] = {}
    for name, m8 in metrics["int8"].items():
        mf = metrics["float"][name]
        row = {
            "kind": sources[name].spec.kind, "pictures": m8["pictures"],
            "presence_auc_int8": m8["presence"]["auc"], "presence_auc_float": mf["presence"]["auc"],
            "presence_accuracy_int8": m8["presence"]["accuracy"], "presence_int8": m8["presence"],
            "int8_drop_points": drops[name], "ms_per_picture_int8": m8["ms_per_picture"],
            "ece_int8": calibration["per_source_ece"].get(name),
        }
        if m8.get("ap50") is not None:
            row.update(ap_int8=m8["ap"], ap50_int8=m8["ap50"], ap_float=mf["ap"], ap50_float=mf["ap50"],
                       cars=m8["cars"], at_threshold_int8=m8["at_threshold"], curve_int8=m8["curve"])
        datasets[name] = row
    u = {}
    if uiuc:
        for prec in ("int8", "float"):
            for k in ("single_scale", "multi_scale"):
                u[f"{k}_eer_{prec}"] = uiuc[prec][k]["eer"]
        u["single_scale_int8"] = {k: v for k, v in uiuc["int8"]["single_scale"].items() if not k.startswith("_")}
        u["multi_scale_int8"] = {k: v for k, v in uiuc["int8"]["multi_scale"].items() if not k.startswith("_")}
    rep: dict[str, Any] = {
        "run": fit.run_name,
        "datasets": datasets,
        "uiuc": u,
        "int8_drop_points_worst": max(drops.values()) if drops else None,
        "calibration": {k: v for k, v in calibration.items() if k != "calibration"}
        | {"a": calibration["calibration"].a, "b": calibration["calibration"].b, "method": "platt"},
        "threshold": manifest.threshold,
        "model": {"params": int(fit.model.count_params()), "first_layer_weights": first_layer_params(fit.model),
                  "int8_bytes": i8.size_bytes, "arch": cfg.arch,
                  "float_bytes": manifest.models["float"].size_bytes,
                  "macs_320x240": manifest.extra["macs"]["macs"], "padded_input": manifest.extra["macs"]["padded_input"],
                  "input_multiple": manifest.input_multiple,
                  "best_epoch": fit.best_epoch, "epochs_run": len(history.get("loss", []))},
        "dense_baseline": fit.dense,
        "latency_ms_320x240": latency,
        "train_seconds": round(fit.train_seconds, 2),
        "total_seconds": round(total_seconds, 2),
        "data": {n: s.report for n, s in sources.items()},
    }
    if site:
        rep["site"] = site
    rep["targets"] = check_targets(rep)
    return rep


def check_targets(rep: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    kind = "finetune" if "site" in rep else "train"
    for name, op, goal, path, runs in TARGETS:
        if runs not in ("", kind):
            continue
        v = _dig(rep, path)
        met = None if v is None else (v >= goal if op == ">=" else v <= goal)
        out.append({"target": name, "value": v, "goal": f"{op} {goal:g}", "met": met})
    return out


# --- pictures ------------------------------------------------------------------------

def _draw(img: np.ndarray, truth, ignore, boxes, threshold: float, width: int = 2):
    from PIL import Image, ImageDraw

    im = Image.fromarray(img).convert("RGB")
    d = ImageDraw.Draw(im)
    for colour, arr in ((IGNORE, ignore), (TRUTH, truth)):
        for x, y, w, h in arr:
            d.rectangle([x, y, x + max(w - 1, 0), y + max(h - 1, 0)], outline=colour, width=width)
    for b in boxes:
        if b.score >= threshold:
            d.rectangle([b.x, b.y, b.x + max(b.width - 1, 0), b.y + max(b.height - 1, 0)], outline=PRED,
                        width=max(1, width - 1))
            d.text((b.x + 2, b.y + 1), f"{b.score:.2f}", fill=PRED)
    return im


def _grid(tiles, path: Path, tile_w: int = 200, cols: int = 4) -> None:
    from PIL import Image

    tiles = [t.resize((tile_w, max(1, int(tile_w * t.height / t.width)))) for t in tiles]
    rows = (len(tiles) + cols - 1) // cols
    h = max(t.height for t in tiles)
    grid = Image.new("RGB", (cols * (tile_w + 4), rows * (h + 4)), "white")
    for i, t in enumerate(tiles):
        grid.paste(t, ((i % cols) * (tile_w + 4), (i // cols) * (h + 4)))
    grid.save(path)


def error_gallery(out: Path, name: str, results, pictures, threshold: float, n: int = 8) -> dict[str, str]:
    """The worst false positives (highest-scoring wrong boxes / no-car pictures) and the
    worst misses (cars with the lowest best score / car pictures with the lowest top score)."""
    by_name = {p.name: p for p in pictures}
    fps, misses = [], []
    for r in results:
        if len(r.truth) and r.hits:
            fps += [(b.score, r, b) for b, h in zip(r.boxes, r.hits) if h == 0]
        elif not len(r.truth):
            fps.append((r.top_score, r, None))
        if len(r.truth):
            found = sum(1 for b, h in zip(r.boxes, r.hits) if h == 1 and b.score >= threshold)
            if found < len(r.truth):
                misses.append((r.top_score if r.boxes else 0.0, r))
    files = {}
    for kind, items in (("false_positives", sorted(fps, key=lambda t: -t[0])[:n]),
                        ("misses", sorted(misses, key=lambda t: t[0])[:n])):
        if not items:
            continue
        tiles = []
        for it in items:
            r = it[1]
            tiles.append(_draw(by_name[r.name].image, r.truth, r.ignore, r.boxes, threshold,
                               width=1 if max(r.shape) < 128 else 2))
        f = f"gallery_{_slug(name)}_{kind}.png"
        _grid(tiles, out / f, tile_w=160 if max(results[0].shape) < 128 else 220)
        files[kind] = f
    return files


def highway_frames(out: Path, model_dir: Path, video: str, threshold: float, n: int = 8) -> str | None:
    """Frames spread over the clip, annotated with the int8 model's boxes and scores."""
    if not video or not Path(video).is_file():
        return None
    import av

    from edge.detector import detect_picture
    from edge.model import ScoreMapModel

    model = ScoreMapModel.load(model_dir, precision="int8")
    with av.open(video) as c:
        frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    tiles = []
    for i in np.linspace(0, len(frames) - 1, n).astype(int):
        boxes, _ = detect_picture(model, frames[i], threshold, model.manifest.nms_iou)
        tiles.append(_draw(frames[i], [], [], boxes, threshold))
    _grid(tiles, out / "highway_int8.png", tile_w=320, cols=2)
    return "highway_int8.png"


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s)


def plots(out: Path, rep: dict[str, Any], history: dict[str, list[float]], uiuc: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for k in ("loss", "val_loss"):
        if k in history:
            ax.plot(range(1, len(history[k]) + 1), history[k], label=k)
    ax.set_xlabel("epoch"); ax.set_title("focal heat loss + box L1"); ax.legend()
    fig.tight_layout(); fig.savefig(out / "training_curves.png", dpi=90); plt.close(fig)
    names.append("training_curves.png")

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, d in rep["datasets"].items():
        if "curve_int8" in d:
            ax.plot(d["curve_int8"]["recall"], d["curve_int8"]["precision"], label=f"{name} (AP50 {d['ap50_int8']:.3f})")
    for key, style in (("single_scale", "-"), ("multi_scale", "--")):
        if uiuc:
            cv = uiuc["int8"][key]["curve"]
            ax.plot(cv["recall"], cv["precision"], style, label=f"UIUC {key.replace('_', '-')} (EER {uiuc['int8'][key]['eer']:.3f})")
    ax.set_xlabel("recall"); ax.set_ylabel("precision"); ax.set_xlim(0, 1.01); ax.set_ylim(0, 1.01)
    ax.set_title("int8 precision-recall (IoU 0.5; UIUC: official rule)"); ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(out / "pr_curves.png", dpi=90); plt.close(fig)
    names.append("pr_curves.png")
    return names


# --- markdown ------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def can_and_cannot(rep: dict[str, Any]) -> str:
    """The one-paragraph summary, written from this run's figures."""
    ds = rep["datasets"]
    good = [f"{n} (AP50 {d['ap50_int8']:.2f})" for n, d in ds.items() if d.get("ap50_int8") is not None and d["ap50_int8"] >= 0.7]
    weak = [f"{n} (AP50 {d['ap50_int8']:.2f})" for n, d in ds.items() if d.get("ap50_int8") is not None and d["ap50_int8"] < 0.7]
    crops = [f"{n} (presence AUC {d['presence_auc_int8']:.3f})" for n, d in ds.items() if d.get("ap50_int8") is None]
    parts = ["This model answers \"is there a car, and where\" on greyscale frames of any size with one invoke."]
    if good:
        parts.append(f"It finds and boxes cars well on {', '.join(good)}.")
    if weak:
        parts.append(f"It is weaker on {', '.join(weak)}: mostly cars that fill most of the frame, cars cut by the "
                     "border and cars half hidden by other vehicles (see the misses galleries).")
    if crops:
        parts.append(f"On crop sets it tells car from no car: {', '.join(crops)}; their boxes are the crop "
                     "extents, so only presence is scored there.")
    parts.append("It was trained on mostly daytime pictures: night, infrared, rain on the lens and cars under "
                 "about 12 px are outside what it has seen, and buses, trucks and ambulances were neither car "
                 "nor background in training, so it may or may not box them. Adapt it to your own camera with a "
                 "YOLO folder of your frames (`--yolo DIR`).")
    return " ".join(parts)


def markdown(rep: dict[str, Any], pics: dict[str, Any]) -> str:
    m, cal = rep["model"], rep["calibration"]
    lines = [
        f"# Car detector training report — {rep['run']}",
        "",
        "Every figure was measured by `make train` through `edge`'s interpreter wrapper and decoder (the code "
        "the Pi runs), on each dataset's validation split (split by time, number range or source photo, never "
        "at random).",
        "",
        "## What this model can and cannot see",
        "",
        can_and_cannot(rep),
        "",
        "## Targets",
        "",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
    ]
    for t in rep["targets"]:
        lines.append(f"| {t['target']} | {t['goal']} | {_fmt(t['value'])} | "
                     f"{'yes' if t['met'] else ('n/a' if t['met'] is None else '**no**')} |")
    lines += ["", f"## Per dataset (int8 unless marked; default threshold {rep['threshold']:.2f})", "",
              "| dataset | pictures | AP int8 | AP50 int8 | AP50 float | int8 drop (pts) | presence AUC | "
              "presence acc. | precision | recall | ECE |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, d in rep["datasets"].items():
        at = d.get("at_threshold_int8")
        pr = d["presence_int8"]
        if at:
            p, r = at["precision"], at["recall"]
        else:
            c = pr["confusion"]
            p, r = c["tp"] / max(1, c["tp"] + c["fp"]), c["tp"] / max(1, c["tp"] + c["fn"])
        lines.append(f"| {name} | {d['pictures']} | {_fmt(d.get('ap_int8'))} | {_fmt(d.get('ap50_int8'))} | "
                     f"{_fmt(d.get('ap50_float'))} | {d['int8_drop_points']:.2f} | {_fmt(d['presence_auc_int8'])} | "
                     f"{_fmt(d['presence_accuracy_int8'])} | {p:.3f} | {r:.3f} | {_fmt(d['ece_int8'])} |")
    lines += ["", "Precision/recall: boxes at IoU 0.5 on box datasets, pictures (\"has a car\") on crop datasets, "
              "whose boxes are only the crop's extent. AP by pycocotools (COCO AP@[.5:.95] and AP@.5); buses, "
              "trucks and ambulances are crowd (ignore) regions.", ""]
    if rep.get("site"):
        st = rep["site"]
        b, f = st["base"], st["finetuned"]
        lines += [f"## Fine-tuned for {st['site']}: base vs fine-tuned on its {st['held_out_frames']} newest frames", "",
                  "| | base | fine-tuned |", "|---|---|---|",
                  f"| AP50 (int8) | {_fmt(b['ap50'])} | {_fmt(f['ap50'])} |",
                  f"| presence accuracy | {_fmt(b['presence_accuracy'])} | {_fmt(f['presence_accuracy'])} |",
                  f"| false alarms per hour of frames ({st['fps']:g} fps) | {b['false_alarms_per_hour']} | "
                  f"{f['false_alarms_per_hour']} |",
                  f"| precision / recall at its threshold | {b['precision']:.3f} / {b['recall']:.3f} @ {b['threshold']:.2f} | "
                  f"{f['precision']:.3f} / {f['recall']:.3f} @ {f['threshold']:.2f} |",
                  "", f"Base: `{st['base_run']}`. The held-out frames are the site's newest, never trained on. "
                  f"Both models saw them at processing scale {st['processing_scale']:g} (the daemon's "
                  f"`processing.scales = [{st['processing_scale']:g}]`). "
                  "On the default validation sets (loss against the base's own report, points; more than 2 is "
                  "forgetting): " + ", ".join(f"{n} {d['drop_points']:+.2f}" for n, d in st["default_sets"].items())
                  + ".", ""]
    if rep["uiuc"]:
        u = rep["uiuc"]
        lines += ["## UIUC TestImages (official rule)", "",
                  "| | int8 | float |", "|---|---|---|",
                  f"| single-scale EER | {u['single_scale_eer_int8']:.4f} | {u['single_scale_eer_float']:.4f} |",
                  f"| rescaled multi-scale EER (0.5x–1.3x) | {u['multi_scale_eer_int8']:.4f} | {u['multi_scale_eer_float']:.4f} |",
                  f"| single-scale recall / precision @ {rep['threshold']:.2f} | "
                  f"{u['single_scale_int8']['recall']:.3f} / {u['single_scale_int8']['precision']:.3f} | |",
                  "", "A detection counts as the UIUC window centred on its box (100x40 single-scale; the box's "
                  "width multi-scale). The multi-scale check rescales each scene by 0.5, 0.7, 0.9, 1.1 or 1.3 "
                  "(by its number) with its truth scaled to match.", ""]
    lines += ["## Calibrated scores", "",
              f"Platt scaling, fitted on {cal['examples']:,} int8 validation examples of every dataset: "
              f"score = sigmoid({cal['a']:.4f} · logit + {cal['b']:.4f}). Expected calibration error "
              f"{cal['ece_raw']:.4f} before, {cal['ece']:.4f} after. The default threshold "
              f"{rep['threshold']:.2f} maximises the mean F1 over the datasets ({cal['mean_f1']:.4f}). Both were "
              "fitted on the same validation sets they are reported on.", ""]
    de = rep.get("dense_baseline")
    if de:
        uiuc_pres = rep["datasets"].get("uiuc", {})
        lines += ["## Why a CNN: the detector next to the seed's dense baseline", "",
                  "| | detector CNN (int8) | dense baseline (float, 100x40 only) |", "|---|---|---|",
                  f"| parameters | {m['params']:,} | {de['params']:,} |",
                  f"| first-layer weights | {m['first_layer_weights']:,} | {de['first_layer_weights']:,} |",
                  f"| bytes | {m['int8_bytes']:,} (.tflite) | {de['float32_bytes']:,} (float32 weights) |",
                  f"| UIUC held-out windows: accuracy | {_fmt(uiuc_pres.get('presence_accuracy_int8'))} | {de['accuracy']:.4f} |",
                  f"| UIUC held-out windows: ROC AUC | {_fmt(uiuc_pres.get('presence_auc_int8'))} | {de['auc']:.4f} |",
                  "", f"A dense first layer on a 200x100 picture needs {de['first_layer_weights_200x100']:,} weights "
                  "(200·100·100 + 100) and a new network for every picture size; the CNN's first layer has "
                  f"{m['first_layer_weights']} and runs on any frame ({m['macs_320x240']:,} MACs for 320x240, padded "
                  f"to {m['padded_input'][1]}x{m['padded_input'][0]}; "
                  f"{rep['latency_ms_320x240']['int8']['p50_ms']} ms int8 / {rep['latency_ms_320x240']['float']['p50_ms']} ms "
                  f"float here with {rep['latency_ms_320x240']['int8']['runtime']}, 1 thread).", ""]
    lines += ["## Model", "",
              "CenterNet-style, greyscale: 4x4/4 patchify stem, depthwise-separable stages to stride 64 with a "
              "whole-picture context vector, a small top-down path back to stride 8, and two heads: a car-centre "
              "heat map and the box (sub-cell offset, log width, log height) per cell. One invoke per frame, any "
              f"size (padded to a multiple of {m['input_multiple']}). See the README's \"Measured figures\" for "
              "the alternatives tried.",
              f"Best epoch {m['best_epoch']} of {m['epochs_run']}; train {rep['train_seconds']:.0f} s, whole run "
              f"{rep['total_seconds']:.0f} s.", ""]
    lines += ["## Pictures", "",
              "Colours in every picture: **green** = true car, **yellow** = ignore region (bus, truck, "
              "ambulance), **red** = the int8 model's box with its calibrated score, drawn at the default "
              f"threshold {rep['threshold']:.2f}.", ""]
    for p in pics["plots"]:
        lines.append(f"![{p}]({p})")
    if pics.get("highway"):
        lines += ["", "### Highway clip (unlabelled, a fixed camera over a freeway)", "", f"![highway]({pics['highway']})"]
    for name, files in pics["galleries"].items():
        lines += ["", f"### {name}: worst false positives and misses", ""]
        for kind, f in files.items():
            lines.append(f"{kind.replace('_', ' ')}:\n\n![{name} {kind}]({f})\n")
    lines += ["", "## Data", ""]
    for name, d in rep["data"].items():
        lab = d.get("labels") or {}
        lines.append(f"- **{name}** ({d['kind']}, {d['path']}): {d['pictures']} pictures, {d['cars']} cars; "
                     f"{d['train']} train / {d['val']} validation ({d['split']}); {d.get('unreadable', 0)} unreadable; "
                     f"{lab.get('bad_lines', 0)} bad label lines in {lab.get('files_with_bad_lines', 0)} files")
    lines.append("")
    return "\n".join(lines)


def write_report(work: Path, rep: dict[str, Any], history, evals, sources, uiuc, video: str) -> None:
    pics: dict[str, Any] = {"plots": plots(work, rep, history, uiuc), "galleries": {}}
    for name, ev in evals["int8"].items():
        pics["galleries"][name] = error_gallery(work, name, ev["results"], sources[name].subset("val"), rep["threshold"])
    pics["highway"] = highway_frames(work, work, video, rep["threshold"])
    artifacts.write_json(work / "report.json", rep)
    (work / "report.md").write_text(markdown(rep, pics))
