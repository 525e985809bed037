import numpy as np

from vaelab.experiments.report import _baseline, _describe


def run(name, kl_scale, anneal, active, collapsed, weights=None, units=None):
    epochs = len(weights) if weights else 2
    history = {"epoch": np.arange(1, epochs + 1, dtype=float),
               "kl_weight": np.array(weights or [1.0] * epochs),
               "active_units": np.array(units or [active] * epochs, dtype=float)}
    return {"name": name, "title": name, "history": history,
            "config": {"kl_scale": kl_scale, "anneal": anneal, "schedule": None, "latent_dim": 32},
            "metrics": {"epochs": epochs, "test_mse": 0.02, "test_kl": 3.0, "active_units": active,
                        "output_std": 0.0 if collapsed else 0.1, "collapsed": collapsed},
            "image": {"original": np.zeros(4), "reconstruction": np.full(4, 0.5)}}


def test_sentences_follow_the_numbers():
    plain_unscaled = run("plain", 1.0, None, 0, True)
    delayed = run("delayed", 1.0, "2:2", 0, True, weights=[0, 0, 0.5, 1], units=[30, 31, 0, 0])
    text = _describe(delayed, _baseline(delayed, [plain_unscaled, delayed]))
    assert "up to 31 units were active" in text
    assert "from epoch 3 (KL weight 0.5), so annealing only delayed the collapse" in text
    assert "Training image 1 is reconstructed with MSE 0.2500" in text

    prevented = run("prevented", 1.0, "2:2", 12, False, weights=[0, 0, 0.5, 1], units=[32, 32, 20, 12])
    text = _describe(prevented, _baseline(prevented, [plain_unscaled, prevented]))
    assert "while the same model without annealing collapsed: annealing prevented the collapse" in text

    never = run("never", 1.0, "2:2", 0, True, weights=[0, 0, 0.5, 1], units=[0, 0, 0, 0])
    assert "annealing did not prevent the collapse" in _describe(never, None)

    healthy = run("healthy", 1 / 784, "2:2", 14, False, weights=[0, 0, 0.5, 1])
    plain = run("plain784", 1 / 784, None, 15, False)
    text = _describe(healthy, _baseline(healthy, [plain, healthy]))
    assert "scaled by 1/784" in text and "without annealing did not collapse either" in text


COLLAPSED_OPENING = (
    "With the KL scaled by 1 and the KL weight on schedule {schedule}, after {epochs} epoch(s) "
    "the test MSE is 0.0200, the KL is 3.00 nats per image, 0 of 32 latent units are active and "
    "the output std across test images is 0.000: collapsed: every input decodes to almost the "
    "same picture. Training image 1 is reconstructed with MSE 0.2500.")


def test_each_annealing_branch_gives_its_exact_sentence():
    """Histories made by hand so that each branch of the annealing sentence is taken once,
    with numbers that differ between branches (epochs at weight 0, peak units, the epoch
    and weight at which the units died)."""
    plain_unscaled = run("plain", 1.0, None, 0, True)

    # Units alive while the weight was 0, dead from the first epoch at weight 0.25.
    delayed = run("delayed", 1.0, "3:2", 0, True, weights=[0, 0, 0, 0.25, 1],
                  units=[12, 30, 31, 0, 0])
    assert _describe(delayed, _baseline(delayed, [plain_unscaled, delayed])) == (
        COLLAPSED_OPENING.format(schedule="linear 3:2", epochs=5)
        + " While the KL weight was 0 (epochs 1–3) up to 31 units were active; they died once "
          "the weight rose from epoch 4 (KL weight 0.25), so annealing only delayed the collapse.")

    # No unit was ever active, not even at weight 0.
    never_active = run("never", 1.0, "2:2", 0, True, weights=[0, 0, 0.5, 1], units=[0, 0, 0, 0])
    assert _describe(never_active, _baseline(never_active, [plain_unscaled, never_active])) == (
        COLLAPSED_OPENING.format(schedule="linear 2:2", epochs=4)
        + " While the KL weight was 0 (epochs 1–2) up to 0 units were active; annealing did not "
          "prevent the collapse.")

    # Not collapsed, and the same scale without a schedule collapsed.
    prevented = run("prevented", 1.0, "2:2", 12, False, weights=[0, 0, 0.5, 1],
                    units=[32, 27, 20, 12])
    assert _describe(prevented, _baseline(prevented, [plain_unscaled, prevented])) == (
        "With the KL scaled by 1 and the KL weight on schedule linear 2:2, after 4 epoch(s) the "
        "test MSE is 0.0200, the KL is 3.00 nats per image, 12 of 32 latent units are active and "
        "the output std across test images is 0.100: not collapsed. Training image 1 is "
        "reconstructed with MSE 0.2500. While the KL weight was 0 (epochs 1–2) up to 32 units "
        "were active, and 12 remain at the end, while the same model without annealing "
        "collapsed: annealing prevented the collapse.")

    # Not collapsed, and neither is the same scale without a schedule.
    healthy = run("healthy", 1 / 784, "1:3", 14, False, weights=[0, 1 / 3, 2 / 3, 1],
                  units=[16, 15, 15, 14])
    plain = run("plain784", 1 / 784, None, 15, False)
    assert _baseline(healthy, [plain_unscaled, plain, healthy]) is plain
    assert _describe(healthy, plain) == (
        "With the KL scaled by 1/784 and the KL weight on schedule linear 1:3, after 4 epoch(s) "
        "the test MSE is 0.0200, the KL is 3.00 nats per image, 14 of 32 latent units are active "
        "and the output std across test images is 0.100: not collapsed. Training image 1 is "
        "reconstructed with MSE 0.2500. While the KL weight was 0 (epoch 1) up to 16 units "
        "were active, and 14 remain at the end; the same model without annealing did not "
        "collapse either.")

    # No annealing sentence without a schedule, or without an epoch at weight 0.
    assert _describe(plain_unscaled, None) == COLLAPSED_OPENING.format(
        schedule="constant 1", epochs=2)
    no_zero_epoch = run("resumed", 1.0, "2:2", 0, True, weights=[0.5, 1], units=[3, 0])
    assert _describe(no_zero_epoch, None) == COLLAPSED_OPENING.format(
        schedule="linear 2:2", epochs=2)


def test_sentences_where_the_verdict_or_the_baseline_differ():
    """Collapsed by output std while units are active; no run to compare with."""
    std_only = run("std", 1.0, "2:2", 5, True, weights=[0, 0, 1], units=[20, 9, 5])
    text = _describe(std_only, None)
    assert text.endswith(" While the KL weight was 0 (epochs 1–2) up to 20 units were active, "
                         "and 5 remain at the end, but the output barely depends on the input: "
                         "annealing did not prevent the collapse.")
    alone = run("alone", 1 / 784, "2:2", 14, False, weights=[0, 0, 1], units=[16, 15, 14])
    assert _describe(alone, None).endswith(
        " While the KL weight was 0 (epochs 1–2) up to 16 units were active, and 14 remain at "
        "the end.")


# ------------------------------------------------------------------- several seeds


def seeded(name, kl_scale, anneal, results):
    """An experiment of several seeds: ``results`` is ``[(active, collapsed), …]``."""
    seeds = [run(name, kl_scale, anneal, active, collapsed) for active, collapsed in results]
    for i, s in enumerate(seeds):
        s["config"]["seed"] = i
        s["metrics"]["test_mse"] = 0.02 + 0.01 * i
    return {**seeds[0], "seeds": seeds}


def test_several_seeds_give_mean_std_and_claims_only_where_all_agree():
    from vaelab.experiments.report import _describe_seeds

    base = seeded("plain", 1.0, None, [(0, True)] * 3)
    kept = seeded("kept", 1.0, "4:8", [(12, False), (10, False), (14, False)])
    text = _describe_seeds(kept, _baseline(kept, [base, kept]))
    assert "over 3 seeds (0 … 2)" in text
    assert "test MSE 0.0300 ± 0.0100" in text                 # 0.02, 0.03, 0.04
    assert "12.0 ± 2.0 of 32 latent units active" in text
    assert "collapsed in 0 of 3 seeds" in text and "Not collapsed in any seed." in text
    assert "annealing prevented the collapse in all 3 seeds" in text

    split = seeded("split", 1.0, "4:8", [(0, True), (10, False), (0, True)])
    text = _describe_seeds(split, _baseline(split, [base, split]))
    assert "collapsed in 2 of 3 seeds" in text
    assert text.endswith("The seeds disagree, so no verdict is stated.")
    assert "annealing" not in text.split("; ")[-1]

    both = seeded("both", 1.0, "4:8", [(0, True)] * 3)
    text = _describe_seeds(both, _baseline(both, [base, both]))
    assert "Collapsed in every seed." in text
    assert "annealing did not prevent the collapse in any of the 3 seeds" in text


def test_spread_of_one_value_has_no_deviation():
    from vaelab.experiments.report import mean_std, spread

    assert spread([0.5], 2) == "0.50"
    assert spread([1, 2, 3], 1) == "2.0 ± 1.0"
    mean, std = mean_std([4.0])
    assert mean == 4.0 and std != std   # nan
