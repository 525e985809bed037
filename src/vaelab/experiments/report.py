"""``report.md`` and a self-contained ``report.html`` from a lab folder's runs.

Reads only what the runs wrote (config.json, metrics.json, history.csv,
lab_image.npz, figures), so a report can be remade without retraining.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import markdown
import numpy as np

from vaelab.analysis import plots
from vaelab.core.config import format_scale
from vaelab.store import runs

CLASSIFIER = "01-classifier"  # the lab folder's classifier run
DIGIT = "lab_digit.png"
ANNEALING = "annealing.png"


def _load_run(lab_dir: Path, folder: str, name: str, title: str) -> dict:
    run_dir = lab_dir / folder
    return {
        "name": name, "title": title, "dir": run_dir, "path": folder,
        "config": runs.read_json(run_dir / "config.json"),
        "metrics": runs.read_json(run_dir / "metrics.json"),
        "history": runs.read_history_csv(run_dir / "history.csv"),
        "image": runs.read_npz(run_dir / "lab_image.npz"),
    }


def _vae_runs(lab_dir: Path) -> list[dict]:
    """One dict per experiment: its first seed's run, with every seed's run in ``"seeds"``."""
    lab = runs.read_json(lab_dir / "lab.json")
    found = []
    for name, title in lab["experiments"].items():
        folders = lab.get("runs", {}).get(name, [name])
        seeds = [_load_run(lab_dir, folder, name, title) for folder in folders]
        found.append({**seeds[0], "seeds": seeds})
    return found


def latent_size(config: dict) -> int:
    """The latent units of a run's ``config.json``: every stochastic layer's, summed."""
    latent = config["latent_dim"]
    return sum(latent) if isinstance(latent, list) else int(latent)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (``nan`` for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def spread(values, digits: int) -> str:
    """``m ± s`` over seeds (just ``m`` for one seed)."""
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def collapse_count(seeds: list[dict]) -> str:
    """``collapsed in 2 of 3 seeds``."""
    collapsed = sum(bool(r["metrics"]["collapsed"]) for r in seeds)
    return f"collapsed in {collapsed} of {len(seeds)} seed{'s' if len(seeds) > 1 else ''}"


def _schedule(config: dict) -> str:
    if config.get("anneal"):
        return f"linear {config['anneal']}"
    return config.get("schedule") or "constant 1"


def _verdict(metrics: dict) -> str:
    return "yes" if metrics["collapsed"] else "no"


def _describe(run: dict, baseline: dict | None) -> str:
    """Two or three sentences saying what the run's numbers show.

    ``baseline`` is the run with the same KL scale and no schedule, if any.
    """
    m, h, c = run["metrics"], run["history"], run["config"]
    scale = f"scaled by {format_scale(c['kl_scale'])}"
    image = run["image"]
    image_mse = float(np.mean(np.square(image["reconstruction"] - image["original"])))
    state = ("collapsed: every input decodes to almost the same picture"
             if m["collapsed"] else "not collapsed")
    text = (f"With the KL {scale} and the KL weight on schedule {_schedule(c)}, after "
            f"{m['epochs']} epoch(s) the test MSE is {m['test_mse']:.4f}, the KL is "
            f"{m['test_kl']:.2f} nats per image, {m['active_units']} of {latent_size(c)} latent "
            f"units are active and the output std across test images is {m['output_std']:.3f}: "
            f"{state}. Training image {c.get('lab_image', 1)} is reconstructed with MSE "
            f"{image_mse:.4f}.")
    if c.get("anneal") and "active_units" in h:
        units, weights = h["active_units"], h["kl_weight"]
        free = weights == 0
        before = int(units[free].max()) if free.any() else None
        zero = np.flatnonzero(units == 0)
        if before is not None:
            n_free = int(free.sum())
            span = "epoch 1" if n_free == 1 else f"epochs 1–{n_free}"
            text += f" While the KL weight was 0 ({span}) up to {before} units were active"
            if m["collapsed"] and before > 0 and m["active_units"] > 0:
                text += (f", and {m['active_units']} remain at the end, but the output barely "
                         f"depends on the input: annealing did not prevent the collapse.")
            elif m["collapsed"] and before > 0:
                first = int(h["epoch"][zero[0]]) if zero.size else None
                when = f" from epoch {first} (KL weight {weights[zero[0]]:g})" if first else ""
                text += f"; they died once the weight rose{when}, so annealing only delayed the collapse."
            elif m["collapsed"]:
                text += "; annealing did not prevent the collapse."
            elif baseline is None:
                text += f", and {m['active_units']} remain at the end."
            elif baseline["metrics"]["collapsed"]:
                text += (f", and {m['active_units']} remain at the end, while the same model "
                         f"without annealing collapsed: annealing prevented the collapse.")
            else:
                text += (f", and {m['active_units']} remain at the end; the same model without "
                         f"annealing did not collapse either.")
    return text


def _describe_seeds(run: dict, baseline: dict | None) -> str:
    """What an experiment's seeds show together; a verdict only where all seeds agree."""
    seeds, c = run["seeds"], run["config"]
    m = [r["metrics"] for r in seeds]
    collapsed = [bool(x["collapsed"]) for x in m]
    text = (f"With the KL scaled by {format_scale(c['kl_scale'])} and the KL weight on schedule "
            f"{_schedule(c)}, over {len(seeds)} seeds (0 … {len(seeds) - 1}) after "
            f"{m[0]['epochs']} epoch(s): test MSE {spread([x['test_mse'] for x in m], 4)}, KL "
            f"{spread([x['test_kl'] for x in m], 2)} nats per image, "
            f"{spread([x['active_units'] for x in m], 1)} of {latent_size(c)} latent units "
            f"active (mean ± standard deviation); {collapse_count(seeds)}.")
    if 0 < sum(collapsed) < len(seeds):
        return text + " The seeds disagree, so no verdict is stated."
    text += " Collapsed in every seed." if all(collapsed) else " Not collapsed in any seed."
    if (c.get("anneal") or c.get("schedule")) and baseline is not None:
        base = [bool(r["metrics"]["collapsed"]) for r in baseline["seeds"]]
        if all(base) and not any(collapsed):
            text += (f" The same model without annealing collapsed in every seed: annealing "
                     f"prevented the collapse in all {len(seeds)} seeds.")
        elif all(base) and all(collapsed):
            text += (f" The same model without annealing collapsed too: annealing did not "
                     f"prevent the collapse in any of the {len(seeds)} seeds.")
    return text


def _baseline(run: dict, vae_runs: list[dict]) -> dict | None:
    for other in vae_runs:
        c = other["config"]
        if (c["kl_scale"] == run["config"]["kl_scale"] and not c.get("anneal")
                and not c.get("schedule")):
            return other
    return None


def _digit_figure(lab_dir: Path, vae_runs: list[dict]) -> None:
    images = [vae_runs[0]["image"]["original"]] + [r["image"]["reconstruction"] for r in vae_runs]
    titles = ["original"] + [r["title"] for r in vae_runs]
    plots.side_by_side(images, titles, lab_dir / DIGIT,
                       title="training image 1 and its reconstruction by each run (clipped to [0, 1])")


def _annealing_figure(lab_dir: Path, vae_runs: list[dict]) -> list[dict]:
    annealed = [r for r in vae_runs if r["config"].get("anneal") or r["config"].get("schedule")]
    if annealed:
        plots.annealing_curves([r["history"] for r in annealed], [r["title"] for r in annealed],
                               lab_dir / ANNEALING)
    return annealed


def _markdown(lab_dir: Path, classifier: dict, vae_runs: list[dict], annealed: list[dict],
              lab: dict) -> str:
    lines = ["# vaelab: the VAE lab, reproduced", ""]
    if lab.get("quick"):
        lines += ["*Quick run: a subset of MNIST and short schedules; numbers are not the lab's.*", ""]
    seeds = lab.get("seeds", 1)
    lines += [f"Total time {lab['total_seconds']:.0f} s. Collapsed means no active latent unit "
              "(encoder-mean variance over the test set ≤ 0.01 in every dimension) or output std "
              "< 0.01.", ""]
    if seeds > 1:
        lines += _seed_tables(vae_runs, seeds)
    else:
        lines += ["| run | what | KL scale | KL weight | epochs | test MSE | KL (nats) "
                  "| active units | output std | collapsed | seconds |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in vae_runs:
            m, c = r["metrics"], r["config"]
            lines.append(
                f"| `{r['name']}` | {r['title']} | {format_scale(c['kl_scale'])} | {_schedule(c)} "
                f"| {m['epochs']} | {m['test_mse']:.4f} | {m['test_kl']:.2f} "
                f"| {m['active_units']}/{latent_size(c)} | {m['output_std']:.3f} | {_verdict(m)} "
                f"| {train_seconds(m)} |")
    lines += ["", "## 1. A classifier from the custom dense layer", "",
              f"`OurDense(32, relu) → OurDense(10, softmax)` reaches "
              f"**{classifier['test_accuracy']:.2%}** test accuracy after "
              f"{classifier['epochs']} epoch(s) ({classifier['train_seconds']:.0f} s).", "",
              "## 2. Training image 1, reconstructed by every run", "", f"![digit]({DIGIT})", ""]
    for i, r in enumerate(vae_runs, start=3):
        describe = _describe_seeds if seeds > 1 else _describe
        shown = f" (figures: seed {r['config']['seed']})" if seeds > 1 else ""
        lines += [f"## {i}. {r['title']} (`{r['name']}`)", "",
                  describe(r, _baseline(r, vae_runs)), "",
                  f"![reconstructions]({r['path']}/reconstructions.png){shown}", "",
                  f"[Explore this model's latent space]({r['path']}/explorer.html) "
                  "(sliders, drawing, interpolation; runs offline in the browser).", ""]
    if annealed:
        lines += ["## Annealing, epoch by epoch", "",
                  "Reconstruction loss, KL weight and active units per epoch of the annealed runs.",
                  "", f"![annealing]({ANNEALING})", ""]
    return "\n".join(lines)


def train_seconds(metrics: dict) -> str:
    """A run's training seconds; for a run trained in a population, that fit's (shared)."""
    together = metrics.get("trained_together")
    seconds = f"{metrics['train_seconds']:.0f}"
    return f"{seconds} ({together} runs together)" if together else seconds


def _seed_tables(vae_runs: list[dict], seeds: int) -> list[str]:
    """Mean ± standard deviation per experiment, then every seed's numbers."""
    lines = [f"Every VAE experiment ran with {seeds} seeds (0 … {seeds - 1}); numbers are mean ± "
             "sample standard deviation over the seeds.", "",
             "| run | what | KL scale | KL weight | epochs | test MSE | KL (nats) | active units "
             "| collapsed |", "|---|---|---|---|---|---|---|---|---|"]
    for r in vae_runs:
        m, c = [x["metrics"] for x in r["seeds"]], r["config"]
        lines.append(
            f"| `{r['name']}` | {r['title']} | {format_scale(c['kl_scale'])} | {_schedule(c)} "
            f"| {m[0]['epochs']} | {spread([x['test_mse'] for x in m], 4)} "
            f"| {spread([x['test_kl'] for x in m], 2)} "
            f"| {spread([x['active_units'] for x in m], 1)}/{latent_size(c)} "
            f"| {collapse_count(r['seeds']).removeprefix('collapsed in ')} |")
    lines += ["", "Each seed:", "", "| run | seed | test MSE | KL (nats) | active units "
              "| output std | collapsed | seconds |", "|---|---|---|---|---|---|---|---|"]
    for r in vae_runs:
        for seed_run in r["seeds"]:
            m = seed_run["metrics"]
            lines.append(
                f"| `{seed_run['path']}` | {seed_run['config']['seed']} | {m['test_mse']:.4f} "
                f"| {m['test_kl']:.2f} | {m['active_units']}/{latent_size(r['config'])} "
                f"| {m['output_std']:.3f} | {_verdict(m)} | {train_seconds(m)} |")
    return lines


def html_page(text: str, folder: Path, title: str = "vaelab lab report") -> str:
    """Render the Markdown with its images (paths relative to ``folder``) inlined as base64,
    so the page stands alone."""
    body = markdown.markdown(text, extensions=["tables"])

    def inline(match):
        data = base64.b64encode((folder / html.unescape(match.group(1))).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.2em .5em}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n{body}\n</body></html>\n")


def write_report(lab_dir) -> Path:
    """Write ``report.md`` and ``report.html`` into ``lab_dir``; return the HTML path."""
    lab_dir = Path(lab_dir)
    lab = runs.read_json(lab_dir / "lab.json")
    classifier = runs.read_json(lab_dir / CLASSIFIER / "metrics.json")
    vae_runs = _vae_runs(lab_dir)
    _digit_figure(lab_dir, vae_runs)
    annealed = _annealing_figure(lab_dir, vae_runs)
    markdown = _markdown(lab_dir, classifier, vae_runs, annealed, lab)
    runs.write_text(lab_dir / "report.md", markdown + "\n")
    runs.write_text(lab_dir / "report.html", html_page(markdown, lab_dir))
    return lab_dir / "report.html"
