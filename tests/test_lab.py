import re

import pytest

from vaelab import cli, runs
from vaelab.lab import experiments

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
    assert cli.main(["lab", "--quick", "--quiet", "--out", str(out)]) == 0
    return out


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
    from vaelab.report import write_report

    before = (quick_lab / "report.md").read_text()
    (quick_lab / "report.md").unlink()
    write_report(quick_lab)
    assert (quick_lab / "report.md").read_text() == before


def test_lab_refuses_non_empty_out(tmp_path, capsys):
    (tmp_path / "x").write_text("")
    assert cli.main(["lab", "--quick", "--out", str(tmp_path)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
