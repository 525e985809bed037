import re

import numpy as np
import pytest

from vaelab import cli
from vaelab.experiments.lab import experiments
from vaelab.store import runs

NUMPY_STATES = []  # NumPy's global generator before and after the quick lab
RUNS = ["02-vae", "03-vae-unscaled", "04-anneal", "05-anneal-unscaled"]


def test_the_plan_follows_the_lab():
    plan = experiments()
    assert [e.name for e in plan] == RUNS
    full = {e.name: e.config for e in plan}
    assert full["02-vae"].epochs == 2 and full["02-vae"].for_data(784).kl_scale == pytest.approx(1 / 784)
    assert full["03-vae-unscaled"].kl_scale == 1.0
    assert full["04-anneal"].anneal == "4:8" and full["04-anneal"].epochs == 20
    assert full["05-anneal-unscaled"].kl_scale == 1.0 and full["05-anneal-unscaled"].anneal == "4:8"
    assert all(e.config.train_size is None for e in plan)
    assert all(e.config.train_size == 1024 for e in experiments(quick=True))


@pytest.fixture(scope="module")
def quick_lab(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab") / "lab"
    np.random.seed(99)
    NUMPY_STATES.append(np.random.get_state()[1].copy())
    assert cli.main(["lab", "--quick", "--quiet", "--out", str(out)]) == 0
    NUMPY_STATES.append(np.random.get_state()[1].copy())
    return out


@pytest.mark.mnist
def test_the_lab_leaves_numpys_global_generator_alone(quick_lab):
    np.testing.assert_array_equal(NUMPY_STATES[0], NUMPY_STATES[1])


@pytest.mark.mnist
def test_quick_lab_writes_runs_and_both_reports(quick_lab):
    for name in ["01-classifier", *RUNS]:
        assert runs.is_complete(quick_lab / name), name
    assert 0.1 < runs.read_json(quick_lab / "01-classifier" / "metrics.json")["test_accuracy"] <= 1
    markdown = (quick_lab / "report.md").read_text()
    for name in RUNS:
        assert f"`{name}`" in markdown
    assert "only delayed the collapse" in markdown or "prevented the collapse" in markdown \
        or "did not prevent" in markdown
    html = (quick_lab / "report.html").read_text()
    sources = re.findall(r'<img[^>]*src="([^"]*)"', html)
    assert len(sources) == 6  # digit row, four runs' reconstructions, annealing curves
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert html.count("<tr>") == 5  # header and four runs


@pytest.mark.mnist
def test_quick_lab_collapse_verdicts(quick_lab):
    verdicts = {name: runs.read_json(quick_lab / name / "metrics.json")["collapsed"] for name in RUNS}
    assert verdicts["02-vae"] is False and verdicts["03-vae-unscaled"] is True


@pytest.mark.mnist
def test_report_is_remade_from_the_run_folders(quick_lab):
    from vaelab.experiments.report import write_report

    before = (quick_lab / "report.md").read_text()
    (quick_lab / "report.md").unlink()
    write_report(quick_lab)
    assert (quick_lab / "report.md").read_text() == before


def test_lab_refuses_non_empty_out(tmp_path, capsys):
    (tmp_path / "x").write_text("")
    assert cli.main(["lab", "--quick", "--out", str(tmp_path)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_lab_with_seeds_trains_each_seed_and_reports_their_spread(tmp_path):
    """``--seeds 2 --together 4`` on a synthetic 1 024/512-image folder: a run folder per
    experiment and seed (seed recorded), trained as two populations of four (02 and 03 for 2
    epochs, 04 and 05 for 5), and a report with mean ± std and each seed's row."""
    from conftest import make_idx_dir

    make_idx_dir(tmp_path / "data", n_train=1024, n_test=512)
    out = tmp_path / "lab"
    assert cli.main(["lab", "--quick", "--quiet", "--seeds", "2", "--together", "4",
                     "--data-dir", str(tmp_path / "data"), "--out", str(out)]) == 0
    summary = runs.read_json(out / "lab.json")
    assert summary["seeds"] == 2
    for name in RUNS:
        assert summary["runs"][name] == [f"{name}/seed-0", f"{name}/seed-1"]
        for seed in (0, 1):
            assert runs.is_complete(out / name / f"seed-{seed}")
            assert runs.read_json(out / name / f"seed-{seed}" / "config.json")["seed"] == seed
            assert runs.read_json(out / name / f"seed-{seed}" / "metrics.json")[
                "trained_together"] == 4
    first = runs.read_json(out / "02-vae" / "seed-0" / "metrics.json")["test_mse"]
    second = runs.read_json(out / "02-vae" / "seed-1" / "metrics.json")["test_mse"]
    assert first != second
    markdown = (out / "report.md").read_text()
    assert "Every VAE experiment ran with 2 seeds (0 … 1)" in markdown
    assert f"{(first + second) / 2:.4f} ± " in markdown
    for name in RUNS:
        assert f"`{name}/seed-1`" in markdown
    assert "over 2 seeds (0 … 1)" in markdown and "(4 runs together) |" in markdown


@pytest.mark.parametrize("option", ["--seeds", "--together"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_lab_refuses_seeds_below_one(tmp_path, capsys, option, value):
    out = tmp_path / "lab"
    assert cli.main(["lab", "--quick", option, value, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    expected = ("must be an integer from 1 to 1000" if option == "--seeds"
                else "must be a positive integer")
    assert err.count("\n") == 1 and f"{option} {expected}, received {value}" in err
    assert not out.exists()
