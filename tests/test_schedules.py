import functools

import pytest

from vaelab.core import schedules
def test_linear_lab_weights_for_20_epochs():
    weights = [schedules.linear(e, start=4, duration=8) for e in range(1, 21)]
    assert weights == [0, 0, 0, 0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875] + [1.0] * 9


def test_cyclical_follows_fu_et_al():
    # 20 epochs, 4 cycles of 5, ramp over the first half of each cycle.
    weights = [schedules.cyclical(e, total_epochs=20, cycles=4, ratio=0.5) for e in range(1, 21)]
    assert weights[:5] == pytest.approx([0.0, 0.4, 0.8, 1.0, 1.0])
    assert weights[5:10] == weights[:5] and weights[15:] == weights[:5]


def test_sigmoid_is_monotone_and_centered():
    weights = [schedules.sigmoid(e, center=10, steepness=0.5) for e in range(1, 21)]
    assert weights[9] == pytest.approx(0.5)
    assert all(a < b for a, b in zip(weights, weights[1:]))


@pytest.mark.parametrize("spec,epoch,expected", [
    ("linear:2:4", 4, 0.5), ("cyclical:2:1", 3, 0.4), ("sigmoid:5:1", 5, 0.5),
    ("constant:0.25", 7, 0.25)])
def test_parse_schedule(spec, epoch, expected):
    assert schedules.parse_schedule(spec, total_epochs=10)(epoch) == pytest.approx(expected)


def test_parse_anneal():
    schedule = schedules.parse_anneal("4:8")
    assert isinstance(schedule, functools.partial) and schedule(12) == 1.0 and schedule(6) == 0.25


@pytest.mark.parametrize("spec,message", [
    ("4", "START:DURATION"), ("4:8:1", "START:DURATION"), ("a:8", "START .* integer"),
    ("4:0", "≥ 1"), ("0:4", "≥ 1"), ("4:2.5", "DURATION .* integer")])
def test_parse_anneal_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        schedules.parse_anneal(spec)


@pytest.mark.parametrize("spec,message", [
    ("cosine:1", "must be one of"), ("cyclical:4", "expects cyclical:CYCLES:RATIO"),
    ("cyclical:0:0.5", "CYCLES ≥ 1"), ("cyclical:4:1.5", "RATIO ≤ 1"),
    ("sigmoid:10:0", "STEEPNESS > 0"), ("sigmoid:x:1", "CENTER .* number"),
    ("constant:-1", "WEIGHT ≥ 0"), ("sigmoid:nan:1", "finite")])
def test_parse_schedule_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        schedules.parse_schedule(spec, total_epochs=20)
