"""The verdicts: pass or fail for each exercise, decided in the grader's process.

No student code runs here. Each verdict takes the inputs the grader drew
(:func:`vaelab.teaching.grading.exercises.draw`) and the probe's report (:class:`~vaelab.teaching.grading.wire.Report`,
checked field by field), computes the reference itself — ``vaelab.core.divergences``,
``vaelab.core.schedules``, Keras' own mean squared error and Adam, the tutorial solution's
layer sizes — and compares. A report that is not of the asked form fails as unusable.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from vaelab.teaching.grading.wire import Report, Unusable


@dataclasses.dataclass
class Result:
    status: str     # "pass", "fail" or "not attempted"
    message: str = ""

    def line(self) -> str:
        return f"fail: {self.message}" if self.status == "fail" else self.status


class Fail(Exception):
    """The exercise's answer is wrong; the message says how."""


def _close(got: np.ndarray, want: np.ndarray, tolerance: float) -> np.ndarray:
    return np.abs(got - want) <= tolerance * np.maximum(1.0, np.abs(want))


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise Fail(f"{what} is not finite ({int(np.sum(~np.isfinite(values)))} of "
                   f"{values.size} values are NaN or infinite)")
    return values


# ------------------------------------------------------------------------------ verdicts


def kl_normal(inputs: dict, report: Report) -> str:
    from vaelab.core import divergences
    mean, std = inputs["same"]
    same = _finite(report.array("same"), "KL(p‖p)")
    if same.size != 1:
        raise Fail(f"for four numbers it returns shape {same.shape}, expected one number")
    same = float(same.reshape(()))
    if abs(same) > 1e-6:
        raise Fail(f"KL(p‖p) must be 0, yours is {same:.4g} for μ = {mean:.3f}, σ = {std:.3f} "
                   f"(is the denominator 2σ₁², not 2σ₁?)")
    args = [np.asarray(inputs[k]) for k in ("mean_q", "std_q", "mean_p", "std_p")]
    got = _finite(report.array("values", (len(args[0]),)), "the result")
    want = np.asarray(divergences.kl_normal(*args), np.float64)
    close = _close(got, want, 1e-4)
    if not np.all(close):
        i = int(np.argmin(close))
        raise Fail(f"differs from formula (a) on {int(np.sum(~close))} of {len(got)} random "
                   f"inputs; e.g. μq = {args[0][i]:.3f}, σq = {args[1][i]:.3f}, μp = "
                   f"{args[2][i]:.3f}, σp = {args[3][i]:.3f}: yours {got[i]:.4f}, expected "
                   f"{want[i]:.4f}")
    return f"matches formula (a) on {len(got)} random inputs, and KL(p‖p) = 0"


def sampling_kl(inputs: dict, report: Report) -> str:
    from vaelab.core import divergences
    if report.integer("count") == 0:
        raise Fail("the layer adds no loss")
    got = float(_finite(report.array("loss", ()), "the added loss"))
    weight, scale = inputs["kl_weight"], inputs["kl_scale"]
    kl = np.asarray(divergences.kl_standard_normal(np.asarray(inputs["mean"], np.float32),
                                                   np.asarray(inputs["log_var"], np.float32)),
                    np.float64)                                                   # (batch,)
    want = weight * scale * kl.mean()
    if abs(got - want) <= 1e-4 * max(1.0, abs(want)):
        return f"added loss {got:.4f} = kl_weight · kl_scale · batch mean of KL"
    if abs(got - weight * scale * kl.sum()) <= 1e-4 * max(1.0, abs(weight * scale * kl.sum())):
        raise Fail(f"the KL is summed over the batch ({got:.4f}), not averaged: {len(kl)}× the "
                   f"expected {want:.4f}")
    raise Fail(f"added loss {got:.4f}, expected {want:.4f} (kl_weight {weight:.3f} · kl_scale "
               f"{scale:.3f} · batch mean of −½ Σ (1 + log σ² − σ² − μ²) = {kl.mean():.4f})")


def sampling_z(inputs: dict, report: Report) -> str:
    n = inputs["n"]
    mean, log_var = np.asarray(inputs["mean"]), np.asarray(inputs["log_var"])
    first = report.array("first")
    if first.shape != (n, 3):
        raise Fail(f"z has shape {first.shape} for a mean of shape ({n}, 3)")
    second, repeat = report.array("second", (n, 3)), report.array("repeat", (n, 3))
    _finite(first, "z")
    if np.array_equal(first, second):
        raise Fail("two calls return the same z: draw ε afresh on every call from the layer's "
                   "seed generator (seed=self.seed_generator), not with a fixed seed")
    if not np.array_equal(first, repeat):
        raise Fail("two layers with the same seed draw different noise: use the layer's "
                   "seed generator (seed=self.seed_generator)")
    variance = np.exp(log_var)
    got_mean, got_var = first.mean(0), first.var(0)
    if np.any(np.abs(got_mean - mean) > 5 * np.sqrt(variance / n)):
        raise Fail(f"z's mean is {np.round(got_mean, 3).tolist()}, expected the encoder's mean "
                   f"{np.round(mean, 3).tolist()}")
    if np.all(np.abs(got_var / variance - 1) < 0.05):
        return "z has the encoder's mean and variance exp(log_var), fresh noise each call"
    if np.all(np.abs(got_var / np.square(log_var) - 1) < 0.05):
        raise Fail(f"z's variance is {np.round(got_var, 3).tolist()} = log_var²: log_var is used "
                   f"as a standard deviation; scale ε by exp(log_var / 2)")
    if np.all(np.abs(got_var / np.square(variance) - 1) < 0.05):
        raise Fail(f"z's variance is {np.round(got_var, 3).tolist()} = exp(log_var)²: ε is "
                   f"scaled by the variance; the standard deviation is exp(log_var / 2)")
    raise Fail(f"z's variance is {np.round(got_var, 3).tolist()}, expected exp(log_var) = "
               f"{np.round(variance, 3).tolist()}")


def adam_steps(start, gradients) -> np.ndarray:
    """Where Keras' ``Adam()`` (its defaults) moves ``start`` in one step per gradient."""
    import keras

    optimizer = keras.optimizers.Adam()
    variable = keras.Variable(np.asarray(start, np.float32))
    steps = []
    for gradient in gradients:
        optimizer.apply_gradients([(np.asarray(gradient, np.float32), variable)])
        steps.append(np.asarray(keras.ops.convert_to_numpy(variable.value), np.float64))
    return np.stack(steps)


def mse_and_adam(inputs: dict, report: Report, what: str) -> None:
    """A compiled model's loss must give the mean squared error of the grader's arrays,
    and its optimizer must move a variable as Adam with Keras' defaults does."""
    if not report.boolean("compiled"):
        raise Fail(f"{what} is {report.text('what')}")
    y_true, y_pred = np.asarray(inputs["y_true"]), np.asarray(inputs["y_pred"])
    loss = report.array("loss")
    if loss.shape not in ((), (len(y_true),)):
        raise Fail(f"{what}'s loss gives shape {loss.shape} for a batch of {len(y_true)}")
    got, want = float(np.mean(_finite(loss, "the loss"))), float(np.mean((y_true - y_pred) ** 2))
    if abs(got - want) > 1e-5 * max(1.0, want):
        raise Fail(f"{what}'s loss is {report.text('loss_name')!r}, expected the mean squared "
                   f"error ('mse'): on the grader's arrays it gives {got:.5f}, the mean squared "
                   f"error {want:.5f}")
    steps = _finite(report.array("steps", (2, len(inputs["start"]))), "the optimizer's steps")
    expected = adam_steps(inputs["start"], inputs["gradients"])
    if not np.all(np.abs(steps - expected) <= 1e-6 * np.maximum(1.0, np.abs(expected))):
        moved = np.round(steps[0] - np.asarray(inputs["start"]), 5).tolist()
        should = np.round(expected[0] - np.asarray(inputs["start"]), 5).tolist()
        raise Fail(f"{what}'s optimizer is {report.text('optimizer')}, expected Adam (Keras' "
                   f"defaults): its first step moves the grader's variable by {moved}, Adam's "
                   f"by {should}")


def compile(inputs: dict, report: Report) -> str:  # noqa: A001 (the exercise's name)
    mse_and_adam(inputs, report, "the model")
    return "compiled with the mean squared error and Adam (checked on the grader's arrays)"


def fit(inputs: dict, report: Report) -> str:
    calls = report.integer("calls")
    if calls != 1:
        raise Fail(f"model.fit is called {calls} times, expected once")
    names = {k: np.asarray(inputs[k], np.float64) for k in ("x_train", "x_test", "y_train",
                                                             "y_test")}

    def which(key):
        if report.fields.get(key) is None:
            return None
        try:
            passed = report.array(key)
        except Unusable:
            return "something else"
        return next((k for k, v in names.items() if passed.shape == v.shape
                     and np.array_equal(passed, v)), "something else")

    x, y = which("x"), which("y")
    if x != "x_train":
        raise Fail(f"fits on {x or 'nothing'}, expected x_train")
    if y is None:
        raise Fail("fit has no targets: a VAE reconstructs its input, so y is x_train too")
    if y != "x_train":
        raise Fail(f"the targets are {y}: a VAE reconstructs its input, so y is x_train")
    epochs = report.fields.get("epochs")
    if isinstance(epochs, bool) or epochs != 2:
        raise Fail(f"fits for {epochs} epoch(s), the lab fits 2")
    return "fits x_train to x_train for 2 epochs"


def annealing(inputs: dict, report: Report) -> str:
    from vaelab.core import schedules
    runs = inputs["schedules"]
    weights = report.arrays("weights", len(runs), [(epochs,) for _, _, epochs in runs])
    for (start, duration, epochs), got in zip(runs, weights):
        want = [schedules.linear(e, start, duration) for e in range(1, epochs + 1)]
        wrong = [e for e in range(epochs) if not abs(got[e] - want[e]) <= 1e-6]
        if wrong:
            e = wrong[0]
            from_zero = [schedules.linear(e, 0, duration) for e in range(1, epochs + 1)]
            if all(abs(g - f) < 1e-6 for g, f in zip(got[start - 1:], from_zero[start - 1:])):
                effect = "the ramp is counted from epoch 0, not from epoch_start"
            elif got[e] > want[e]:
                effect = "the weight is too high"
            else:
                effect = "the weight is too low"
            raise Fail(f"{effect}: with epoch_start {start}, duration {duration}: epoch {e + 1} "
                       f"has weight {got[e]:g}, expected {want[e]:g} (yours "
                       f"{[round(float(w), 3) for w in got]})")
    return "weights per epoch are the lab's (0 until epoch_start, then linear to 1)"


@functools.cache
def lab_units() -> tuple[int, ...]:
    """The sizes of the solution VAE's dense layers, from the solution itself (built here:
    the tutorial's own code, not the student's)."""
    from vaelab.teaching.grading.probes import reference

    model = reference()["make_vae"]()[0]
    return tuple(sorted(int(layer.units) for layer in model.layers
                        if isinstance(getattr(layer, "units", None), int)))


def fresh_vae(inputs: dict, report: Report) -> str:
    models = report._get("models", (list,), "a list")
    if len(models) != len(inputs["kl_scales"]):
        raise Unusable(f"'models' has {len(models)} entries, expected {len(inputs['kl_scales'])}")
    for kl_scale, fields in zip(inputs["kl_scales"], models):
        model = Report(b"{}")
        if not isinstance(fields, dict):
            raise Unusable("an entry of 'models' is not an object")
        model.fields = fields
        if model.boolean("previous"):
            raise Fail("annealed_model is the model trained before: build a fresh one with "
                       "make_vae")
        scales = model.numbers("kl_scales")
        if len(scales) != 1 or abs(scales[0] - kl_scale) > 1e-9 * kl_scale:
            raise Fail(f"the sampling layer's kl_scale is {[round(s, 6) for s in scales]}, the "
                       f"loop's kl_scale is {kl_scale:.6g}: pass it to make_vae")
        units = tuple(sorted(int(u) for u in model.numbers("units")))
        if units != lab_units():
            raise Fail(f"the dense layers have {list(units)} units, the lab's VAE "
                       f"{list(lab_units())}")
        mse_and_adam(inputs, model.part("compiled"), "annealed_model")
    return (f"a fresh VAE per KL scale (both of the grader's), dense layers {list(lab_units())}, "
            f"MSE and Adam")


VERDICTS = {"kl_normal": kl_normal, "sampling_kl": sampling_kl, "sampling_z": sampling_z,
            "compile": compile, "fit": fit, "annealing": annealing, "fresh_vae": fresh_vae}


def decide(exercise: str, inputs: dict, report: Report) -> Result:
    """Pass or fail, with the message; the probe's ``error`` (an exception in the student's
    code, or what the cell lacks) fails the exercise with that text."""
    try:
        if "error" in report:
            raise Fail(report.text("error"))
        return Result("pass", VERDICTS[exercise](inputs, report))
    except Fail as exc:
        return Result("fail", str(exc))
    except Unusable as exc:
        return Result("fail", f"the check's report is unusable: {exc}")
