"""``vaelab ablate``: which methods keep the lab's unscaled VAE (KL × 1) from collapsing.

The lab leaves a question open: without the 1/784, the KL swamps the per-pixel MSE and
the model collapses; annealing only delays it. Each method here trains the lab's model
(784-512-32, MSE, Adam, batch 32) with the KL unscaled (``kl_scale = 1``) for 20 epochs,
with seeds 0 … N − 1:

- ``unscaled``: nothing else (the lab's ``03-vae-unscaled``, for 20 epochs);
- ``cyclical``: cyclical KL annealing, 4 cycles with the weight rising over the first
  half of each (Fu et al. 2019);
- ``free-bits-0.25``, ``free-bits-1``: free bits, λ nats per latent dimension (Kingma et
  al. 2016);
- ``beta-0.1``, ``beta-0.01``: the KL times β < 1;
- ``vamp``, ``iaf``, ``two-layer``: a richer latent model instead of the diagonal Gaussian
  with the standard normal prior (:mod:`vaelab.core.latents`): a VampPrior of 100
  pseudo-inputs, an IAF posterior of 2 steps, two stochastic layers of 32 and 16 units (a
  256-unit MLP between them) — can a better prior or posterior fix the collapse?
- ``scaled``: β = 1/784, the lab's own scaling, for reference.

A method "keeps the model from collapsing" when no seed collapsed (the lab's verdict: an
active unit and an output that depends on the input); the report says so only where all
seeds agree. ``quick=True`` runs 5 epochs on 1 024 training and 512 test images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vaelab.analysis import plots
from vaelab.core.config import TrainConfig
from vaelab.experiments import report
from vaelab.experiments.runner import QUICK_SIZES, Kind, Planned, resume_plan, run_plan
from vaelab.store import runs

FIGURE = "ablation.png"


@dataclasses.dataclass(frozen=True)
class Method:
    name: str       # folder
    title: str      # for the report and the figure
    change: dict    # TrainConfig settings on top of the unscaled lab model


METHODS = [
    Method("unscaled", "KL × 1, nothing else", {}),
    Method("cyclical", "cyclical annealing (4 cycles, ratio 0.5)", dict(schedule="cyclical:4:0.5")),
    Method("free-bits-0.25", "free bits, λ = 0.25 nats", dict(free_bits=0.25)),
    Method("free-bits-1", "free bits, λ = 1 nat", dict(free_bits=1.0)),
    Method("beta-0.1", "β = 0.1", dict(beta=0.1)),
    Method("beta-0.01", "β = 0.01", dict(beta=0.01)),
    Method("vamp", "a VampPrior of 100 pseudo-inputs", dict(prior="vamp:100")),
    Method("iaf", "an IAF posterior (2 steps)", dict(posterior="iaf:2")),
    Method("two-layer", "two stochastic layers (32 and 16)",
           dict(latent_dim=(32, 16), hidden_dim=((512,), (256,)))),
    Method("scaled", "β = 1/784 (the lab's scaling)", dict(beta=1 / 784)),
]


def plan(seeds: int, quick: bool = False, data_dir: str | None = None
         ) -> list[tuple[Method, str, TrainConfig]]:
    """``(method, folder, config)`` of every run, method by method, seed by seed."""
    base = dict(epochs=5, **QUICK_SIZES) if quick else dict(epochs=20)
    return [(method, f"{method.name}/seed-{seed}",
             TrainConfig(kl_scale=1.0, seed=seed, data_dir=data_dir, **base, **method.change))
            for method in METHODS for seed in range(seeds)]


def _plan(quick: bool, seeds: int, data_dir: str | None) -> list[Planned]:
    return [Planned(method.name, method.title, folder, config)
            for method, folder, config in plan(seeds, quick, data_dir)]


def run_ablation(out="runs/ablate", seeds: int = 3, quick: bool = False,
                 data_dir: str | None = None, overwrite: bool = False,
                 verbose: bool = True, together: int | None = None) -> Path:
    """Train every method with every seed into ``out``; write ``report.md``/``.html``.

    All the runs share their model and epochs, so they can train together as populations
    of up to ``together`` (``None``: 8 on an accelerator, one by one on a CPU). An
    interrupted ablation is finished by :func:`resume_ablation`.
    """
    return run_plan(ABLATION, out, quick=quick, seeds=seeds, data_dir=data_dir,
                    overwrite=overwrite, verbose=verbose, together=together)


def resume_ablation(out, verbose: bool = True, together: int | None = None) -> Path:
    """Finish an interrupted ablation in ``out`` (``vaelab ablate --resume OUT``)."""
    return resume_plan(ABLATION, out, verbose=verbose, together=together)


def results(out) -> list[dict]:
    """Per method: its title, config and every seed's ``metrics.json``."""
    out = Path(out)
    summary = runs.read_json(out / "ablate.json")
    found = []
    for name, title in summary["methods"].items():
        seeds = [{"path": folder, "config": runs.read_json(out / folder / "config.json"),
                  "metrics": runs.read_json(out / folder / "metrics.json")}
                 for folder in summary["runs"][name]]
        found.append({"name": name, "title": title, "seeds": seeds})
    return found


def verdict(seeds: list[dict]) -> str:
    """``keeps it from collapsing``, ``collapses`` or ``the seeds disagree``."""
    collapsed = [bool(s["metrics"]["collapsed"]) for s in seeds]
    if not any(collapsed):
        return f"keeps it from collapsing ({len(seeds)} of {len(seeds)} seeds)"
    if all(collapsed):
        return f"collapses ({len(seeds)} of {len(seeds)} seeds)"
    return f"the seeds disagree ({report.collapse_count(seeds)})"


def _markdown(out: Path, methods: list[dict], summary: dict) -> str:
    first = methods[0]["seeds"][0]
    epochs = first["metrics"]["epochs"]
    seeds = summary["seeds"]
    lines = ["# vaelab: what keeps the unscaled VAE from collapsing", ""]
    if summary.get("quick"):
        lines += ["*Quick run: a subset of MNIST and 5 epochs; numbers are not the ablation's.*",
                  ""]
    lines += [f"The lab's VAE with the KL unscaled (KL × 1), {epochs} epochs, {seeds} seed(s) "
              f"(0 … {seeds - 1}) per method; numbers are mean ± sample standard deviation over "
              f"the seeds. Collapsed: no active latent unit (encoder-mean variance ≤ 0.01) or "
              f"output std < 0.01. Total time {summary['total_seconds']:.0f} s.", "",
              "| method | test MSE | KL (nats) | active units | collapsed | verdict |",
              "|---|---|---|---|---|---|"]
    for m in methods:
        values = [s["metrics"] for s in m["seeds"]]
        lines.append(
            f"| {m['title']} (`{m['name']}`) | {report.spread([v['test_mse'] for v in values], 4)} "
            f"| {report.spread([v['test_kl'] for v in values], 2)} "
            f"| {report.spread([v['active_units'] for v in values], 1)}/{_latent(m)} "
            f"| {sum(bool(v['collapsed']) for v in values)} of {len(values)} "
            f"| {verdict(m['seeds'])} |")
    lines += ["", "**Answer.** " + answer(methods), "",
              f"![ablation]({FIGURE})", "", "Each seed:", "",
              "| run | test MSE | KL (nats) | active units | output std | collapsed |",
              "|---|---|---|---|---|---|"]
    for m in methods:
        for s in m["seeds"]:
            v = s["metrics"]
            lines.append(f"| `{s['path']}` | {v['test_mse']:.4f} | {v['test_kl']:.2f} "
                         f"| {v['active_units']}/{_latent(m)} | {v['output_std']:.3f} "
                         f"| {'yes' if v['collapsed'] else 'no'} |")
    return "\n".join(lines)


def _latent(method: dict) -> str:
    """A method's latent units; a hierarchy's per layer too (``48 (32 + 16)``)."""
    latent = method["seeds"][0]["config"]["latent_dim"]
    if isinstance(latent, list):
        return f"{sum(latent)} ({' + '.join(map(str, latent))})"
    return str(latent)


def answer(methods: list[dict]) -> str:
    """Which methods kept every seed from collapsing, which collapsed in every seed, which
    are split; with each kept method's test MSE beside the lab's scaling (``scaled``)."""
    def mse(m):
        return report.spread([s["metrics"]["test_mse"] for s in m["seeds"]], 4)

    tried = [m for m in methods if m["name"] not in ("unscaled", "scaled")]
    kept = [m for m in tried if not any(s["metrics"]["collapsed"] for s in m["seeds"])]
    failed = [m for m in tried if all(s["metrics"]["collapsed"] for s in m["seeds"])]
    split = [m for m in tried if m not in kept and m not in failed]
    reference = next((m for m in methods if m["name"] == "scaled"), None)
    text = ("Kept from collapsing in every seed: "
            + "; ".join(f"{m['title']} (test MSE {mse(m)})" for m in kept) + ". "
            if kept else "No method kept the unscaled model from collapsing in every seed. ")
    if kept and reference is not None:
        text += f"For comparison, the lab's scaling reaches a test MSE of {mse(reference)}. "
    if failed:
        text += "Collapsed in every seed: " + "; ".join(m["title"] for m in failed) + ". "
    if split:
        text += ("The seeds disagree for: "
                 + "; ".join(f"{m['title']} ({report.collapse_count(m['seeds'])})"
                             for m in split) + ".")
    return text.strip()


def write_report(out) -> Path:
    """``report.md``, ``report.html`` and ``ablation.png`` from the runs in ``out``."""
    out = Path(out)
    summary = runs.read_json(out / "ablate.json")
    methods = results(out)
    latent = max(report.latent_size(m["seeds"][0]["config"]) for m in methods)
    plots.ablation_bars(
        [m["title"] for m in methods],
        [[s["metrics"]["active_units"] for s in m["seeds"]] for m in methods],
        [[s["metrics"]["test_mse"] for s in m["seeds"]] for m in methods], latent,
        out / FIGURE, title="the unscaled VAE under each method (bars: mean ± std; dots: seeds)")
    text = _markdown(out, methods, summary)
    runs.write_text(out / "report.md", text + "\n")
    runs.write_text(out / "report.html",
                    report.html_page(text, out, title="vaelab ablation report"))
    return out / "report.html"


ABLATION = Kind("ablate", "ablate.json", "methods", _plan, write_report,
                default_out="runs/ablate", default_seeds=3)
