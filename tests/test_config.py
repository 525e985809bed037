import pytest

from vaelab.core.config import TrainConfig, UsageError, format_scale, parse_kl_scale


@pytest.mark.parametrize("text,value", [("1/784", 1 / 784), ("0.5", 0.5), ("1", 1.0), (2, 2.0)])
def test_parse_kl_scale(text, value):
    assert parse_kl_scale(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "0", "-1/784", "1/0", "nan", "inf", ""])
def test_parse_kl_scale_rejects(text):
    with pytest.raises(UsageError, match=f"received {text!r}"):
        parse_kl_scale(text)


def test_format_scale():
    assert format_scale(1 / 784) == "1/784" and format_scale(1.0) == "1" and format_scale(0.3) == "0.3"
    assert format_scale(1e-310) == "1e-310"  # 1/x overflows (found by tests/test_properties.py)


def test_config_defaults_are_the_labs_and_round_trip():
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.hidden_dim, config.latent_dim) == (2, 32, 512, 32)
    # kl_scale=None is the likelihood's natural scale, fixed once the data's size is known.
    assert config.kl_scale is None and config.kl_schedule() is None
    assert config.for_data(784).kl_scale == pytest.approx(1 / 784)
    assert config.for_data(400).kl_scale == pytest.approx(1 / 400)
    assert TrainConfig(likelihood="bernoulli").for_data(784).kl_scale == 1.0
    assert TrainConfig(kl_scale="1/2").for_data(784).kl_scale == 0.5
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig(anneal="4:8").kl_schedule()(8) == 0.5


@pytest.mark.parametrize("kwargs,message", [
    (dict(epochs=True), "epochs must be a positive integer, received True"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(learning_rate=0), "learning-rate must be a positive number"),
    (dict(train_size=0), "train-size must be a positive integer"),
])
def test_config_rejects(kwargs, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**kwargs)
