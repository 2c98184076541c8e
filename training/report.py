"""report.json (figures for scripts and CI) and report.md with plots (for people)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training import artifacts

TARGETS = {
    "held-out window accuracy (int8)": (">=", 0.99),
    "int8 accuracy drop (points)": ("<=", 0.5),
    "int8 model size (bytes)": ("<=", 64 * 1024),
    "single-scale detection EER (int8)": (">=", 0.985),
    "train seconds (make train, after install)": ("<=", 300),
}


def _public(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not k.startswith("_") and k not in ("scores",)}


def build_report(*, cfg, run_name, results, detection, sizes, history, best_epoch, cnn, dense, latency, manifest,
                 train_seconds, total_seconds, load_report, first_layer) -> dict[str, Any]:
    rep: dict[str, Any] = {
        "run": run_name,
        "float": {**_public(results["float"]), "size_bytes": sizes["float"]},
        "int8": {**_public(results["int8"]), "size_bytes": sizes["int8"]},
        "dense": {**_public(results["dense_int8"]), "params": int(dense.count_params()),
                  "first_layer_weights": first_layer["dense"], "size_bytes": sizes["dense_int8"],
                  "first_layer_weights_200x100": first_layer["dense_200x100"]},
        "cnn": {"params": int(cnn.count_params()), "first_layer_weights": first_layer["cnn"],
                "best_epoch": best_epoch, "epochs_run": len(history.get("loss", []))},
        "int8_drop_points": round((results["float"]["accuracy"] - results["int8"]["accuracy"]) * 100, 4),
        "latency_ms": latency,
        "macs": manifest["macs"],
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(total_seconds, 2),
        "data": load_report.to_dict(),
    }
    for prec, det in detection.items():
        rep[prec]["detection"] = {k: v for k, v in det.items() if not k.startswith("_")}
    rep["targets"] = check_targets(rep)
    return rep


def check_targets(rep: dict[str, Any]) -> list[dict[str, Any]]:
    values = {
        "held-out window accuracy (int8)": rep["int8"]["accuracy"],
        "int8 accuracy drop (points)": rep["int8_drop_points"],
        "int8 model size (bytes)": rep["int8"]["size_bytes"],
        "single-scale detection EER (int8)": rep["int8"].get("detection", {}).get("eer"),
        "train seconds (make train, after install)": rep["total_seconds"],
    }
    out = []
    for name, (op, target) in TARGETS.items():
        v = values[name]
        met = None if v is None else (v >= target if op == ">=" else v <= target)
        out.append({"target": name, "value": v, "goal": f"{op} {target}", "met": met})
    return out


def _plots(out: Path, history, results, detection) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    for k in ("loss", "val_loss"):
        if k in history:
            ax[0].plot(range(1, len(history[k]) + 1), history[k], label=k)
    for k in ("accuracy", "val_accuracy"):
        if k in history:
            ax[1].plot(range(1, len(history[k]) + 1), history[k], label=k)
    ax[0].set_xlabel("epoch"); ax[0].legend(); ax[0].set_title("loss")
    ax[1].set_xlabel("epoch"); ax[1].legend(); ax[1].set_title("accuracy")
    fig.tight_layout(); fig.savefig(out / "training_curves.png", dpi=90); plt.close(fig)
    names.append("training_curves.png")

    c = results["int8"]["confusion"]
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    mat = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    ax.imshow(mat, cmap="Blues")
    for (i, j), v in np.ndenumerate(mat):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=14)
    ax.set_xticks([0, 1], ["no car", "car"]); ax.set_yticks([0, 1], ["no car", "car"])
    ax.set_xlabel("predicted"); ax.set_ylabel("true"); ax.set_title("int8, held-out windows")
    fig.tight_layout(); fig.savefig(out / "confusion_int8.png", dpi=90); plt.close(fig)
    names.append("confusion_int8.png")

    if detection:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        for prec, det in detection.items():
            cv = det["curve"]
            ax.plot(cv["recall"], cv["precision"], label=f"{prec} (EER {det['eer']:.3f})")
        ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
        ax.set_xlabel("recall"); ax.set_ylabel("precision"); ax.set_xlim(0.5, 1.01); ax.set_ylim(0.5, 1.01)
        ax.legend(); ax.set_title("UIUC single-scale detection")
        fig.tight_layout(); fig.savefig(out / "pr_curve.png", dpi=90); plt.close(fig)
        names.append("pr_curve.png")
    return names


def scene_grid(out: Path, detection: dict[str, Any], scenes: dict[int, np.ndarray], truth: dict, n: int = 12) -> str | None:
    """Test scenes with true (green) and predicted int8 (red) boxes at the operating threshold."""
    det = detection.get("int8")
    if not det or not scenes:
        return None
    from PIL import Image, ImageDraw

    tiles = []
    for k in sorted(det["_boxes"])[:n]:
        im = Image.fromarray(scenes[k]).convert("RGB")
        d = ImageDraw.Draw(im)
        for r, c, w in truth.get(k, []):
            d.rectangle([c, r, c + w - 1, r + 0.4 * w - 1], outline=(0, 200, 0), width=2)
        for b in det["_boxes"][k]:
            if b.score >= det["threshold"]:
                d.rectangle([b.x, b.y, b.x + b.width - 1, b.y + b.height - 1], outline=(230, 0, 0), width=1)
        tiles.append(im.resize((240, int(240 * im.height / im.width))))
    cols = 3
    rows = (len(tiles) + cols - 1) // cols
    h = max(t.height for t in tiles)
    grid = Image.new("RGB", (cols * 244, rows * (h + 4)), "white")
    for i, t in enumerate(tiles):
        grid.paste(t, ((i % cols) * 244, (i // cols) * (h + 4)))
    grid.save(out / "scenes_int8.png")
    return "scenes_int8.png"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def markdown(rep: dict[str, Any], plots: list[str]) -> str:
    i8, fl, de, cnn = rep["int8"], rep["float"], rep["dense"], rep["cnn"]
    lines = [
        f"# Car detector training report — {rep['run']}",
        "",
        "All figures below were measured by `make train` through `edge`'s interpreter wrapper and decoder "
        "(the code the Pi runs).",
        "",
        "## Targets",
        "",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
    ]
    for t in rep["targets"]:
        lines.append(f"| {t['target']} | {t['goal']} | {_fmt(t['value'])} | {'yes' if t['met'] else ('n/a' if t['met'] is None else '**no**')} |")
    lines += [
        "",
        "## CNN vs dense baseline (same training windows, held-out windows)",
        "",
        "| | score-map CNN (int8) | CNN (float) | dense baseline (int8) |",
        "|---|---|---|---|",
        f"| parameters | {cnn['params']:,} | {cnn['params']:,} | {de['params']:,} |",
        f"| first-layer weights | {cnn['first_layer_weights']:,} | {cnn['first_layer_weights']:,} | {de['first_layer_weights']:,} |",
        f"| bytes (.tflite) | {i8['size_bytes']:,} | {fl['size_bytes']:,} | {de['size_bytes']:,} |",
        f"| accuracy | {i8['accuracy']:.4f} | {fl['accuracy']:.4f} | {de['accuracy']:.4f} |",
        f"| ROC AUC | {i8['auc']:.4f} | {fl['auc']:.4f} | {de['auc']:.4f} |",
        f"| ms per 100x40 window | {rep['latency_ms']['window']['int8']['p50_ms']} | {rep['latency_ms']['window']['float']['p50_ms']} | {rep['latency_ms']['window']['dense_int8']['p50_ms']} |",
        "",
        f"A dense first layer on a 200x100 picture would need {de['first_layer_weights_200x100']:,} weights "
        f"(200*100*100 + 100) and a new network for every picture size; the CNN's first layer has "
        f"{cnn['first_layer_weights']} and runs on a whole {rep['macs']['input'][1]}x{rep['macs']['input'][0]} "
        f"frame in one invoke ({rep['macs']['macs']:,} MACs, "
        f"{rep['latency_ms']['frame']['int8']['p50_ms']} ms int8 / {rep['latency_ms']['frame']['float']['p50_ms']} ms float "
        f"on this machine with {rep['latency_ms']['frame']['int8']['runtime']}).",
        "",
    ]
    if "detection" in i8:
        d8, df = i8["detection"], fl.get("detection", {})
        lines += [
            "## Detection on UIUC TestImages (official rule)",
            "",
            "| | int8 | float |",
            "|---|---|---|",
            f"| EER (recall = precision) | {d8['eer']:.4f} | {df.get('eer', float('nan')):.4f} |",
            f"| recall @ {d8['threshold']} | {d8['recall']:.4f} | {df.get('recall', float('nan')):.4f} |",
            f"| precision @ {d8['threshold']} | {d8['precision']:.4f} | {df.get('precision', float('nan')):.4f} |",
            f"| F-measure @ {d8['threshold']} | {d8['f_measure']:.4f} | {df.get('f_measure', float('nan')):.4f} |",
            f"| ms per scene | {d8['ms_per_scene']} | {df.get('ms_per_scene')} |",
            "",
            "Published single-scale EERs for reference: ~97.5% (implicit shape model), ~98.5% (ESS, Hough "
            "forests), ~99.9% (Mutch & Lowe 2006), all with desktop models hundreds of times larger.",
            "",
        ]
    lines += ["## Data", "", f"- {rep['data']['source']}: {rep['data']['loaded']} pictures loaded, "
              f"{rep['data']['corrupt']} unreadable skipped, per class {rep['data']['per_class']}", ""]
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def write_report(work: Path, rep: dict[str, Any], history, results, detection, scenes=None, truth=None) -> None:
    plots = _plots(work, history, results, detection)
    grid = scene_grid(work, detection, scenes or {}, truth or {})
    if grid:
        plots.append(grid)
    artifacts.write_json(work / "report.json", rep)
    (work / "report.md").write_text(markdown(rep, plots))
