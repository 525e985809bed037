import contextlib

import keras
import numpy as np
import pytest

from vaelab.core.config import TrainConfig, UsageError
from vaelab.dist import devices


def test_single_device_defaults():
    assert devices.device_count() == 1
    assert isinstance(devices.distribution_scope(TrainConfig()), contextlib.nullcontext)


def test_predict_matches_keras_predict_for_any_row_count():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x = np.random.default_rng(0).random((7, 3)).astype(np.float32)
    np.testing.assert_allclose(devices.predict(model, x, batch_size=4), model.predict(x, verbose=0),
                               rtol=1e-6)
    two = keras.Model(model.inputs, [model.outputs[0], model.outputs[0] * 2])
    first, second = devices.predict(two, x)
    np.testing.assert_allclose(second, 2 * first, rtol=1e-6)


def test_check_divisible_names_the_remainder(monkeypatch):
    class FakeParallel:
        class device_mesh:  # noqa: N801
            devices = np.zeros(4)

    monkeypatch.setattr(keras.distribution, "DataParallel", FakeParallel)
    devices.check_divisible(TrainConfig(batch_size=32), 60000, 10000, 992)
    with pytest.raises(UsageError, match="the last batch of the 1002 test images has 10, not divisible by 4"):
        devices.check_divisible(TrainConfig(batch_size=32), 60000, 1002, 992)
