import pytest

from vaelab.config import TrainConfig, UsageError, format_scale, parse_kl_scale


@pytest.mark.parametrize("text,value", [("1/784", 1 / 784), ("0.5", 0.5), ("1", 1.0), (2, 2.0)])
def test_parse_kl_scale(text, value):
    assert parse_kl_scale(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "0", "-1/784", "1/0", "nan", "inf", ""])
def test_parse_kl_scale_rejects(text):
    with pytest.raises(UsageError, match=f"received {text!r}"):
        parse_kl_scale(text)


def test_format_scale():
    assert format_scale(1 / 784) == "1/784" and format_scale(1.0) == "1" and format_scale(0.3) == "0.3"


def test_config_defaults_are_the_labs_and_round_trip():
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.hidden_dim, config.latent_dim) == (2, 32, 512, 32)
    assert config.kl_scale == pytest.approx(1 / 784) and config.kl_schedule() is None
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
