import os

import numpy as np
import pytest

from vaelab.store import runs
def test_atomic_path_renames_on_success_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "a.json"
    runs.write_json(target, {"x": 1})
    assert runs.read_json(target) == {"x": 1}
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    with pytest.raises(RuntimeError):
        with runs.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert runs.read_json(target) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_history_csv_round_trip(tmp_path):
    history = {"loss": [0.5, 0.25], "kl_weight": [0.0, 0.125]}
    runs.write_history_csv(tmp_path / "h.csv", history)
    assert (tmp_path / "h.csv").read_text().splitlines()[0] == "epoch,loss,kl_weight"
    back = runs.read_history_csv(tmp_path / "h.csv")
    np.testing.assert_array_equal(back["epoch"], [1, 2])
    np.testing.assert_array_equal(back["loss"], history["loss"])


def test_npz_round_trip_and_completeness(tmp_path):
    runs.write_npz(tmp_path / "i.npz", a=np.arange(3.0))
    np.testing.assert_array_equal(runs.read_npz(tmp_path / "i.npz")["a"], [0, 1, 2])
    assert not runs.is_complete(tmp_path)
    runs.write_json(tmp_path / "metrics.json", {"complete": False})
    assert not runs.is_complete(tmp_path)
    runs.write_json(tmp_path / "metrics.json", {"complete": True})
    assert runs.is_complete(tmp_path)
