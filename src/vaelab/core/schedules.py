"""KL-weight schedules: pure functions of the 1-based epoch number.

Being functions of the epoch alone, they give a resumed run the same weights
as an uninterrupted one. ``parse_schedule`` turns the CLI's text form into one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from vaelab.choices import LEARNING_RATE_SCHEDULES

Schedule = Callable[[int], float]


def constant(epoch: int, weight: float = 1.0) -> float:
    """The same weight every epoch (no annealing)."""
    return weight


def linear(epoch: int, start: int = 4, duration: int = 8) -> float:
    """The lab's annealing: 0 before ``start``, then ``min(1, (epoch − start) / duration)``.

    With ``start=4, duration=8`` epochs 1..20 get 0, 0, 0, 0, 0.125, …, 0.875, 1, …, 1.
    """
    if epoch < start:
        return 0.0
    return min(1.0, (epoch - start) / duration)


def cyclical(epoch: int, total_epochs: int, cycles: int = 4, ratio: float = 0.5) -> float:
    """Cyclical annealing (Fu et al., 2019, "Cyclical Annealing Schedule", eq. 6).

    The run is cut into ``cycles`` cycles; in each, the weight rises linearly
    from 0 to 1 over the first ``ratio`` of the cycle, then stays at 1.
    """
    period = total_epochs / cycles
    tau = ((epoch - 1) % math.ceil(period)) / period  # position in the cycle, [0, 1)
    return min(1.0, tau / ratio)


def sigmoid(epoch: int, center: float = 10.0, steepness: float = 1.0) -> float:
    """Logistic annealing (Bowman et al., 2016): ``1 / (1 + exp(−steepness · (epoch − center)))``.

    Computed so that no ``exp`` overflows, however steep the curve.
    """
    t = steepness * (epoch - center)
    if t >= 0:
        return 1.0 / (1.0 + math.exp(-t))
    return math.exp(t) / (1.0 + math.exp(t))


def _number(text: str, kind, what: str, spec: str):
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{what} in {spec!r} must be {'an integer' if kind is int else 'a number'}, "
                         f"received {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} in {spec!r} must be finite, received {text!r}")
    return value


def parse_anneal(spec: str) -> Schedule:
    """``"START:DURATION"`` → the lab's linear schedule (START ≥ 1, DURATION ≥ 1)."""
    parts = spec.split(":")
    if len(parts) != 2:
        raise ValueError(f"--anneal expects START:DURATION (e.g. 4:8), received {spec!r}")
    start = _number(parts[0], int, "START", spec)
    duration = _number(parts[1], int, "DURATION", spec)
    if start < 1 or duration < 1:
        raise ValueError(f"--anneal START and DURATION must be ≥ 1, received {spec!r}")
    return functools.partial(linear, start=start, duration=duration)


def parse_schedule(spec: str, total_epochs: int) -> Schedule:
    """``"cyclical:CYCLES:RATIO"``, ``"sigmoid:CENTER:STEEPNESS"``, ``"linear:START:DURATION"``
    or ``"constant:WEIGHT"`` → a schedule function."""
    name, _, rest = spec.partition(":")
    args = rest.split(":") if rest else []
    forms = {"linear": "linear:START:DURATION", "cyclical": "cyclical:CYCLES:RATIO",
             "sigmoid": "sigmoid:CENTER:STEEPNESS", "constant": "constant:WEIGHT"}
    if name not in forms:
        raise ValueError(f"--schedule must be one of {', '.join(forms.values())}; received {spec!r}")
    expected = forms[name].count(":")
    if len(args) != expected:
        raise ValueError(f"--schedule {name} expects {forms[name]}, received {spec!r}")
    if name == "linear":
        return parse_anneal(rest)
    if name == "cyclical":
        cycles = _number(args[0], int, "CYCLES", spec)
        ratio = _number(args[1], float, "RATIO", spec)
        if cycles < 1 or not 0 < ratio <= 1:
            raise ValueError(f"--schedule cyclical needs CYCLES ≥ 1 and 0 < RATIO ≤ 1, received {spec!r}")
        return functools.partial(cyclical, total_epochs=total_epochs, cycles=cycles, ratio=ratio)
    if name == "sigmoid":
        center = _number(args[0], float, "CENTER", spec)
        steepness = _number(args[1], float, "STEEPNESS", spec)
        if steepness <= 0:
            raise ValueError(f"--schedule sigmoid needs STEEPNESS > 0, received {spec!r}")
        return functools.partial(sigmoid, center=center, steepness=steepness)
    weight = _number(args[0], float, "WEIGHT", spec)
    if weight < 0:
        raise ValueError(f"--schedule constant needs WEIGHT ≥ 0, received {spec!r}")
    return functools.partial(constant, weight=weight)


def burda_learning_rate(epoch: int, base: float = 1e-3) -> float:
    """Burda et al. 2015's learning rate for 0-based ``epoch``: ``base · 10^(−i/7)`` during the
    3^i passes of stage i = 0 … 7 (3 280 passes in all); stage 7's rate after that."""
    end = 0
    for stage in range(8):
        end += 3**stage
        if epoch < end:
            return base * 10 ** (-stage / 7)
    return base * 10 ** (-1)
