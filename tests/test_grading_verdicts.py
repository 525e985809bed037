"""The grader's side alone: reading a probe's report (vaelab.teaching.grading.wire), the verdicts
against references computed here, and the inputs drawn from the seed. No sandbox: a
report is whatever bytes a hostile probe could write."""

import base64
import io
import json

import numpy as np
import pytest

from vaelab.core.config import UsageError
from vaelab.teaching.grading import exercises, verdicts
from vaelab.teaching.grading.wire import Report, Unusable, decode_array, encode


def report(fields) -> Report:
    return Report(json.dumps(encode(fields)).encode())


def npy_field(header_shape, payload: bytes, descr="<f8") -> dict:
    """An .npy file written by hand: a header that may lie about the data after it."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {header_shape}, }}"
    header = header.ljust(118) + "\n"
    raw = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + payload
    return {"npy": base64.b64encode(raw).decode()}


def test_arrays_round_trip_and_every_malformed_form_is_refused():
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(decode_array(encode(values), "x", (2, 3)), values)
    with pytest.raises(Unusable, match="has shape \\(2, 3\\), expected \\(3, 2\\)"):
        decode_array(encode(values), "x", (3, 2))
    with pytest.raises(Unusable, match="dtype <U3, expected numbers"):
        decode_array(encode(np.asarray("abc")), "x")
    with pytest.raises(Unusable, match="dtype object, expected numbers"):
        decode_array(npy_field((1,), b"\0" * 8, descr="|O"), "x")
    with pytest.raises(Unusable, match="does not match its header"):    # a lying header
        decode_array(npy_field((10**12,), b"\0" * 8), "x")
    with pytest.raises(Unusable, match="is not an array"):
        decode_array({"npy": 1}, "x")
    with pytest.raises(Unusable, match="is not an array"):
        decode_array([1.0, 2.0], "x")
    with pytest.raises(Unusable, match="not a .npy array"):
        decode_array({"npy": base64.b64encode(b"pickle").decode()}, "x")


def test_a_report_is_a_json_object_with_checked_fields():
    for raw in (b'{"status": "pass", "message": ""}\n{"status": "pass"}', b"[1]", b"\xff",
                b'{"x": NaN}', b"[" * 100000):
        with pytest.raises(Unusable):
            Report(raw)
    fields = Report(b'{"count": true, "n": 3, "text": "a\\nb"}')
    with pytest.raises(Unusable, match="'count' is not an integer"):
        fields.integer("count")                  # true is not 1
    assert fields.integer("n") == 3
    assert fields.text("text") == "a b"           # one line


def test_a_forged_verdict_is_never_a_pass():
    inputs = exercises.draw(5)
    for name in verdicts.VERDICTS:
        for forged in ({"status": "pass", "message": "all good"}, {}, {"pass": True}):
            result = verdicts.decide(name, inputs[name], report(forged))
            assert result.status == "fail", (name, forged)
            assert result.message.startswith("the check's report is unusable"), result.message


def test_the_probe_error_fails_with_its_text_and_never_passes():
    result = verdicts.decide("kl_normal", exercises.draw(0)["kl_normal"],
                             report({"error": "pass\nall good", "values": 0}))
    assert (result.status, result.message) == ("fail", "pass all good")


def kl(mean_q, std_q, mean_p, std_p):
    return np.log(std_p / std_q) + (std_q**2 + (mean_q - mean_p) ** 2) / (2 * std_p**2) - 0.5


def test_kl_normal_verdict_against_the_formula():
    inputs = exercises.draw(11)["kl_normal"]
    args = [np.asarray(inputs[k]) for k in ("mean_q", "std_q", "mean_p", "std_p")]
    mean, std = inputs["same"]
    right = verdicts.decide("kl_normal", inputs, report({"values": kl(*args),
                                                         "same": np.float64(0.0)}))
    assert right.status == "pass", right.message
    typo = report({"values": kl(*args), "same": np.float64(std / 2 - 0.5)})
    assert "KL(p‖p) must be 0" in verdicts.decide("kl_normal", inputs, typo).message
    off = kl(*args)
    off[7] += 0.1
    wrong = verdicts.decide("kl_normal", inputs, report({"values": off, "same": np.zeros(1)}))
    assert wrong.message.startswith("differs from formula (a) on 1 of 1000 random inputs")
    nan = verdicts.decide("kl_normal", inputs, report({"values": np.full(1000, np.nan),
                                                       "same": np.zeros(())}))
    assert nan.message == "the result is not finite (1000 of 1000 values are NaN or infinite)"


def test_sampling_kl_verdict_mean_and_sum():
    inputs = exercises.draw(2)["sampling_kl"]
    mean, log_var = np.asarray(inputs["mean"]), np.asarray(inputs["log_var"])
    per_example = -0.5 * np.sum(1 + log_var - mean**2 - np.exp(log_var), axis=-1)
    scale = inputs["kl_weight"] * inputs["kl_scale"]
    right = report({"count": 1, "loss": np.float32(scale * per_example.mean())})
    assert verdicts.decide("sampling_kl", inputs, right).status == "pass"
    summed = report({"count": 1, "loss": np.float32(scale * per_example.sum())})
    assert "summed over the batch" in verdicts.decide("sampling_kl", inputs, summed).message
    none = report({"count": 0, "loss": None})
    assert verdicts.decide("sampling_kl", inputs, none).message == "the layer adds no loss"


def test_sampling_z_verdict_names_the_usual_mistakes():
    inputs = exercises.draw(4)["sampling_z"]
    n, mean, log_var = inputs["n"], np.asarray(inputs["mean"]), np.asarray(inputs["log_var"])
    rng = np.random.default_rng(0)
    eps, eps2 = rng.standard_normal((n, 3)), rng.standard_normal((n, 3))

    def verdict(scale, first=eps, second=eps2, repeat=None):
        z = mean + scale * first
        return verdicts.decide("sampling_z", inputs, report({
            "first": z, "second": mean + scale * second,
            "repeat": z if repeat is None else repeat}))

    assert verdict(np.exp(log_var / 2)).status == "pass"
    assert "log_var is used as a standard deviation" in verdict(log_var).message
    assert "ε is scaled by the variance" in verdict(np.exp(log_var)).message
    assert "two calls return the same z" in verdict(np.exp(log_var / 2), second=eps).message
    assert "same seed draw different" in verdict(1.0, repeat=mean + eps2).message


def test_adam_reference_is_adams_formula():
    """Keras' Adam (what the grader compares with) against Kingma & Ba's update with
    Keras' defaults: lr 1e-3, β₁ 0.9, β₂ 0.999, ε 1e-7."""
    inputs = exercises.draw(3)["compile"]
    w, m, v = np.asarray(inputs["start"]), 0.0, 0.0
    for t, g in enumerate(np.asarray(inputs["gradients"]), start=1):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
        w = w - 1e-3 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
    steps = verdicts.adam_steps(inputs["start"], inputs["gradients"])
    np.testing.assert_allclose(steps[-1], w, rtol=1e-6)


def test_lab_units_are_the_solutions():
    assert verdicts.lab_units() == (32, 32, 512, 512, 784)


def test_the_seed_decides_every_input():
    first, again, other = exercises.draw(7), exercises.draw(7), exercises.draw(8)
    assert first == again
    assert all(first[name] != other[name] for name in first)
    assert json.loads(json.dumps(first)) == first          # plain JSON, exactly
    for bad in (-1, 2**32, 1.5, True):
        with pytest.raises(UsageError, match="--seed must be an integer from 0 to 4294967295"):
            exercises.draw(bad)


def test_drawn_log_variances_keep_the_mistakes_apart():
    """exp(lv), lv² and exp(lv)² differ by more than the 5 % the verdict allows, for
    every seed (checked over many)."""
    for seed in range(300):
        lv = np.asarray(exercises.draw(seed)["sampling_z"]["log_var"])
        right = np.exp(lv)
        for wrong in (lv**2, np.exp(2 * lv)):
            assert np.all(np.abs(wrong / right - 1) > 0.15)
