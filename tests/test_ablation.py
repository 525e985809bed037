"""``vaelab ablate``: the methods, their verdicts and the report."""

import re

import pytest
from conftest import make_idx_dir

from vaelab import cli
from vaelab.analysis.plots import DPI
from vaelab.experiments import ablation
from vaelab.store import runs


def test_every_method_is_the_unscaled_lab_model_plus_one_change():
    plan = ablation.plan(seeds=2)
    assert len(plan) == 2 * len(ablation.METHODS) == 20
    configs = {folder: config for _, folder, config in plan}
    for folder, config in configs.items():
        assert config.kl_scale == 1.0 and config.epochs == 20 and config.hidden == (512,)
        assert config.seed == int(folder.rsplit("-", 1)[1])
    assert configs["vamp/seed-0"].pseudo_inputs == 100
    assert configs["iaf/seed-1"].flow_steps == 2
    assert configs["two-layer/seed-0"].latents == (32, 16)
    assert configs["two-layer/seed-0"].hidden_groups == ((512,), (256,))
    assert configs["unscaled/seed-0"].effective_kl_scale(784) == 1.0
    assert configs["cyclical/seed-0"].schedule == "cyclical:4:0.5"
    assert configs["free-bits-1/seed-1"].free_bits == 1.0
    assert configs["beta-0.01/seed-0"].effective_kl_scale(784) == pytest.approx(0.01)
    assert configs["scaled/seed-0"].effective_kl_scale(784) == pytest.approx(1 / 784)
    assert all(c.train_size == 1024 and c.epochs == 5
               for _, _, c in ablation.plan(seeds=1, quick=True))


def _seeds(*collapsed):
    return [{"metrics": {"collapsed": c}} for c in collapsed]


def test_verdicts_need_every_seed():
    assert ablation.verdict(_seeds(False, False, False)) == \
        "keeps it from collapsing (3 of 3 seeds)"
    assert ablation.verdict(_seeds(True, True)) == "collapses (2 of 2 seeds)"
    assert ablation.verdict(_seeds(True, False, True)) == \
        "the seeds disagree (collapsed in 2 of 3 seeds)"


def test_quick_ablation_end_to_end(tmp_path):
    make_idx_dir(tmp_path / "data", n_train=1024, n_test=512)
    out = tmp_path / "ablate"
    assert cli.main(["ablate", "--quick", "--quiet", "--seeds", "2", "--data-dir",
                     str(tmp_path / "data"), "--out", str(out)]) == 0
    summary = runs.read_json(out / "ablate.json")
    assert summary["seeds"] == 2 and list(summary["methods"]) == [m.name for m in ablation.METHODS]
    for method in ablation.METHODS:
        for seed in (0, 1):
            folder = out / method.name / f"seed-{seed}"
            assert runs.is_complete(folder), folder
            saved = runs.read_json(folder / "config.json")
            assert saved["seed"] == seed and saved["kl_scale"] == 1.0
    assert runs.read_json(out / "free-bits-1" / "seed-0" / "config.json")["free_bits"] == 1.0
    assert runs.read_json(out / "beta-0.1" / "seed-0" / "config.json")["effective_kl_scale"] \
        == pytest.approx(0.1)
    markdown = (out / "report.md").read_text()
    for method in ablation.METHODS:
        row = next(line for line in markdown.splitlines() if f"(`{method.name}`)" in line)
        assert re.search(r"\| \d of 2 \| (keeps it|collapses|the seeds disagree)", row), row
    assert "**Answer.**" in markdown and "![ablation](ablation.png)" in markdown
    assert markdown.count("/seed-") == 20
    assert "/48 (32 + 16) |" in markdown
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 1
    raw = (out / "ablation.png").read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(raw[16:20], "big")
    assert width == 12 * DPI


def test_ablate_refuses_bad_seeds_and_a_non_empty_folder(tmp_path, capsys):
    assert cli.main(["ablate", "--quick", "--seeds", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--seeds must be an integer from 1 to 1000, received 0" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    assert cli.main(["ablate", "--quick", "--out", str(tmp_path / "b")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_the_answer_names_kept_collapsed_and_split_methods_with_their_mse():
    def method(name, title, collapsed, mse):
        return {"name": name, "title": title,
                "seeds": [{"metrics": {"collapsed": c, "test_mse": m}}
                          for c, m in zip(collapsed, mse)]}

    methods = [method("unscaled", "KL × 1", [True, True], [0.07, 0.07]),
               method("free-bits-1", "free bits 1", [False, False], [0.064, 0.066]),
               method("beta-0.1", "β = 0.1", [True, True], [0.07, 0.07]),
               method("free-bits-0.25", "free bits 0.25", [False, True], [0.06, 0.07]),
               method("scaled", "the lab's scaling", [False, False], [0.024, 0.026])]
    assert ablation.answer(methods) == (
        "Kept from collapsing in every seed: free bits 1 (test MSE 0.0650 ± 0.0014). For "
        "comparison, the lab's scaling reaches a test MSE of 0.0250 ± 0.0014. Collapsed in "
        "every seed: β = 0.1. The seeds disagree for: free bits 0.25 (collapsed in 1 of 2 "
        "seeds).")
