"""What a trained run leaves in its folder: the model, history, figures, explorer, test
metrics and ``metrics.json`` last (which marks the run complete), and the lines that say how
it ended."""

from __future__ import annotations

import shutil
from pathlib import Path

from vaelab.analysis import evaluation, explorer, plots
from vaelab.core.config import TrainConfig
from vaelab.core.models import VAE
from vaelab.data import Dataset
from vaelab.dist import cluster
from vaelab.store import runs
from vaelab.training import checkpoint
from vaelab.training.callbacks import StopOnNonFinite
from vaelab.training.fit import Member

HISTORY_COLUMNS = ["loss", "reconstruction_loss", "kl_loss", "kl_weight", "active_units",
                   "heldout_kl"]


def write_member(member: Member, saver, dataset: Dataset, seconds: float, initial_epoch: int,
                   verbose: bool, together: int) -> dict:
    """Write one fitted run's results (in a job of several processes, process 0 does)."""
    config, vae = member.config, member.vae
    if cluster.process_count() > 1:
        line = (f"process {cluster.process_index()} of {cluster.process_count()}: "
                f"{config.epochs} epoch(s) trained; weights SHA-256 "
                f"{cluster.weights_digest(vae.model)}")
        if saver is None:  # the others' part ends here; process 0 writes the results
            print(line, flush=True)
            return {"process": cluster.process_index(), "epochs": config.epochs}
        if verbose:
            print(line, flush=True)
        with cluster.without_distribution():  # the results from process 0's own copy
            host = VAE.from_model(cluster.host_copy(vae.model))
            return finish(config, member.run_dir, host, dataset, saver.history, seconds,
                          initial_epoch, verbose)
    return finish(config, member.run_dir, vae, dataset, saver.history, seconds, initial_epoch,
                  verbose, together=together)


def non_finite_message(guard: StopOnNonFinite, saver, run_dir: Path) -> str:
    """One line: where the loss stopped being finite, and which checkpoint is kept."""
    epoch, batch = guard.where
    kept = len(saver.history.get("loss", [])) if saver is not None else 0
    where = (f"the last good checkpoint (epoch {kept}) is kept in {run_dir / checkpoint.FOLDER}"
             if kept else "no epoch had completed, so there is no checkpoint")
    if saver is None:
        where = "process 0 keeps the last good checkpoint"
    return f"non-finite loss at epoch {epoch}, batch {batch}: training stopped; {where}"


def finish(config: TrainConfig, run_dir: Path, vae: VAE, dataset: Dataset, history: dict,
           seconds: float, initial_epoch: int, verbose: bool, together: int = 1) -> dict:
    """Evaluate the trained model and write the run's results, ``metrics.json`` last.

    ``together``: the runs of the population it trained in (``seconds`` is that fit's
    wall time, shared by them); recorded as ``trained_together`` when above 1.
    """
    if "kl_weight" not in history:
        history["kl_weight"] = [1.0] * len(history["loss"])

    values, arrays = evaluation.test_metrics(vae, dataset, config.lab_image)
    values.update(epochs=config.epochs, train_seconds=round(seconds, 3))
    if together > 1:
        values["trained_together"] = together
    if initial_epoch:
        values["resumed_at_epoch"] = initial_epoch + 1
    runs.save_model(run_dir, vae.model)
    runs.write_npz(run_dir / "lab_image.npz", original=dataset.x_train[config.lab_image],
                   reconstruction=arrays["lab_recon"])
    ordered = HISTORY_COLUMNS + sorted(k for k in history if k not in HISTORY_COLUMNS)
    runs.write_history_csv(run_dir / "history.csv", {k: history[k] for k in ordered if k in history})
    plots.write_run_figures(run_dir, vae, dataset, arrays,
                            runs.read_history_csv(run_dir / "history.csv"), config)
    explorer.write_explorer(run_dir, vae=vae, dataset=dataset,
                            encoded=(arrays["means"], arrays["log_vars"]))
    values["complete"] = True
    runs.write_json(run_dir / "metrics.json", values)
    shutil.rmtree(run_dir / checkpoint.FOLDER, ignore_errors=True)  # model.keras supersedes it
    if verbose:
        print(summary_line(run_dir, values))
    return values


def summary_line(run_dir, values: dict) -> str:
    verdict = "COLLAPSED" if values["collapsed"] else "not collapsed"
    return (f"{run_dir}: {values['epochs']} epoch(s) in {values['train_seconds']:.1f} s; "
            f"test MSE {values['test_mse']:.4f}, KL {values['test_kl']:.2f} nats, "
            f"{values['active_units']} active units, output std {values['output_std']:.3f}: {verdict}")
