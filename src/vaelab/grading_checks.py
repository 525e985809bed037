"""The autograder's checks, one per exercise, run as ``python -m vaelab.grading_checks``.

The parent (:mod:`vaelab.grading`) sends ``{"exercise": NAME, "cell": SOURCE}`` on
standard input; the answer is one JSON line ``{"status": "pass" | "fail", "message": …}``
on standard output. Each check runs the student's definitions (or statements) from the
cell next to the tutorial's own solution for everything else, and compares the result
with the package's reference: ``vaelab.divergences`` for the KL, the moments of the
reparametrization, Keras' compile settings, the arguments of ``fit``,
``vaelab.schedules.linear`` for the annealing weights, and the solution's layer sizes.
What the student's code prints is swallowed.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import sys

import vaelab  # noqa: F401  (selects the JAX backend before Keras loads)

import keras
import numpy as np
from keras import ops

from vaelab import divergences, schedules
from vaelab.tutorial import DEFAULT_SOURCE, render

INPUT_SIZE = 784


class Fail(Exception):
    """The exercise's answer is wrong; the message says how."""


def _base() -> dict:
    return {"keras": keras, "np": np, "ops": ops, "vaelab": vaelab, "input_size": INPUT_SIZE,
            "__name__": "submission"}


def _definitions(source: str, what: str) -> list[ast.stmt]:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise Fail(f"syntax error in {what}, line {exc.lineno}: {exc.msg}") from None
    return tree.body


def _run(nodes: list[ast.stmt], namespace: dict) -> None:
    module = ast.Module(body=nodes, type_ignores=[])
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(module, "<submission>", "exec"), namespace)  # noqa: S102


def reference() -> dict:
    """The tutorial solution's classes and functions (and its model sizes), defined."""
    namespace = _base()
    keep = (ast.ClassDef, ast.FunctionDef, ast.Import, ast.ImportFrom)
    nodes = [node for node in _definitions(render(DEFAULT_SOURCE.read_text(encoding="utf-8"),
                                                  student=False), "the tutorial")
             if isinstance(node, keep) or (isinstance(node, ast.Assign) and any(
                 isinstance(t, ast.Tuple) and {getattr(e, "id", "") for e in t.elts}
                 == {"latent_dim", "hidden_dim"} for t in node.targets))]
    _run(nodes, namespace)
    return namespace


def with_student_definitions(cell: str) -> dict:
    """The reference namespace with the cell's functions, classes and imports run over it."""
    namespace = reference()
    keep = (ast.ClassDef, ast.FunctionDef, ast.Import, ast.ImportFrom)
    _run([n for n in _definitions(cell, "the exercise's cell") if isinstance(n, keep)], namespace)
    return namespace


def _numbers(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x) if not isinstance(x, (float, int)) else x,
                      dtype=np.float64)


# ------------------------------------------------------------------------------ checks


def check_kl_normal(cell: str) -> str:
    kl_normal = with_student_definitions(cell).get("kl_normal")
    if kl_normal is None:
        raise Fail("the cell defines no function kl_normal")
    same = float(_numbers(kl_normal(0.5, 2.0, 0.5, 2.0)))
    if abs(same) > 1e-6:
        raise Fail(f"KL(p‖p) must be 0, yours is {same:.4g} for μ = 0.5, σ = 2 (is the "
                   f"denominator 2σ₁², not 2σ₁?)")
    rng = np.random.default_rng(0)
    mean_q, mean_p = rng.normal(0, 2, 1000), rng.normal(0, 2, 1000)
    std_q, std_p = rng.uniform(0.2, 3, 1000), rng.uniform(0.2, 3, 1000)
    got = _numbers(kl_normal(mean_q, std_q, mean_p, std_p))
    want = _numbers(divergences.kl_normal(mean_q, std_q, mean_p, std_p))
    if got.shape != want.shape:
        raise Fail(f"for inputs of shape (1000,) it returns shape {got.shape}")
    error = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    if not np.all(error < 1e-4):
        i = int(np.argmax(error))
        raise Fail(f"differs from formula (a) on {int(np.sum(error >= 1e-4))} of 1000 random "
                   f"inputs; e.g. μq = {mean_q[i]:.3f}, σq = {std_q[i]:.3f}, μp = {mean_p[i]:.3f}, "
                   f"σp = {std_p[i]:.3f}: yours {got[i]:.4f}, expected {want[i]:.4f}")
    return "matches formula (a) on 1000 random inputs, and KL(p‖p) = 0"


def _sampling_layer(cell: str, kl_scale: float, seed: int):
    cls = with_student_definitions(cell).get("TutorialSampling")
    if cls is None:
        raise Fail("the cell defines no class TutorialSampling")
    layer = cls(kl_scale=kl_scale, seed=seed)
    return layer


def check_sampling_kl(cell: str) -> str:
    rng = np.random.default_rng(1)
    mean = rng.normal(0, 1, (8, 4)).astype(np.float32)
    log_var = rng.normal(0, 0.7, (8, 4)).astype(np.float32)
    layer = _sampling_layer(cell, kl_scale=0.5, seed=3)
    layer.build([(8, 4), (8, 4)])
    layer.kl_weight.assign(0.7)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            layer.call([ops.convert_to_tensor(mean), ops.convert_to_tensor(log_var)])
        except NotImplementedError:
            pass  # the next exercise (z) is not done yet; the loss is added before it
    if not layer.losses:
        raise Fail("the layer adds no loss")
    got = float(_numbers(layer.losses[-1]))
    kl = _numbers(divergences.kl_standard_normal(mean, log_var))                # (8,)
    want = 0.7 * 0.5 * kl.mean()
    if abs(got - want) <= 1e-4 * max(1.0, abs(want)):
        return f"added loss {got:.4f} = kl_weight · kl_scale · batch mean of KL"
    if abs(got - 0.7 * 0.5 * kl.sum()) <= 1e-4 * abs(kl.sum()):
        raise Fail(f"the KL is summed over the batch ({got:.4f}), not averaged: 8× the "
                   f"expected {want:.4f}")
    raise Fail(f"added loss {got:.4f}, expected {want:.4f} (kl_weight 0.7 · kl_scale 0.5 · "
               f"batch mean of −½ Σ (1 + log σ² − σ² − μ²) = {kl.mean():.4f})")


def check_sampling_z(cell: str) -> str:
    mean = np.array([[0.5, -1.0, 2.0]], np.float32)
    log_var = np.array([[-1.0, 0.5, 1.2]], np.float32)
    n = 20000
    inputs = [ops.convert_to_tensor(np.repeat(mean, n, 0)),
              ops.convert_to_tensor(np.repeat(log_var, n, 0))]
    layer = _sampling_layer(cell, kl_scale=1.0, seed=3)
    layer.build([(n, 3), (n, 3)])
    with contextlib.redirect_stdout(io.StringIO()):
        first, second = _numbers(layer.call(inputs)), _numbers(layer.call(inputs))
        again = _sampling_layer(cell, kl_scale=1.0, seed=3)
        again.build([(n, 3), (n, 3)])
        repeat = _numbers(again.call(inputs))
    if first.shape != (n, 3):
        raise Fail(f"z has shape {first.shape} for a mean of shape ({n}, 3)")
    if np.array_equal(first, second):
        raise Fail("two calls return the same z: draw ε afresh on every call from the layer's "
                   "seed generator (seed=self.seed_generator), not with a fixed seed")
    if not np.array_equal(first, repeat):
        raise Fail("two layers with the same seed draw different noise: use the layer's "
                   "seed generator (seed=self.seed_generator)")
    variance = np.exp(log_var[0].astype(np.float64))
    got_mean, got_var = first.mean(0), first.var(0)
    if np.any(np.abs(got_mean - mean[0]) > 5 * np.sqrt(variance / n)):
        raise Fail(f"z's mean is {np.round(got_mean, 3).tolist()}, expected the encoder's mean "
                   f"{mean[0].tolist()}")
    if np.all(np.abs(got_var / variance - 1) < 0.05):
        return "z has the encoder's mean and variance exp(log_var), fresh noise each call"
    if np.all(np.abs(got_var / np.square(log_var[0]) - 1) < 0.05):
        raise Fail(f"z's variance is {np.round(got_var, 3).tolist()} = log_var²: log_var is used "
                   f"as a standard deviation; scale ε by exp(log_var / 2)")
    if np.all(np.abs(got_var / np.square(variance) - 1) < 0.05):
        raise Fail(f"z's variance is {np.round(got_var, 3).tolist()} = exp(log_var)²: ε is "
                   f"scaled by the variance; the standard deviation is exp(log_var / 2)")
    raise Fail(f"z's variance is {np.round(got_var, 3).tolist()}, expected exp(log_var) = "
               f"{np.round(variance, 3).tolist()}")


def _statements(cell: str, method: str) -> list[ast.stmt]:
    """Top-level statements of the cell that call ``.<method>(…)``."""
    found = []
    for node in _definitions(cell, "the exercise's cell"):
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) and any(
                isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                and n.func.attr == method for n in ast.walk(node)):
            found.append(node)
    return found


def _mse_and_adam(model, what: str) -> None:
    if model.optimizer is None or getattr(model, "compiled", True) is False:
        raise Fail(f"{what} is not compiled")
    loss = model.loss
    name = loss if isinstance(loss, str) else getattr(loss, "name", getattr(loss, "__name__", ""))
    if name not in ("mse", "mean_squared_error", "MeanSquaredError"):
        raise Fail(f"{what}'s loss is {name or loss!r}, expected the mean squared error ('mse')")
    if not isinstance(model.optimizer, keras.optimizers.Adam):
        raise Fail(f"{what}'s optimizer is {type(model.optimizer).__name__}, expected Adam")


def check_compile(cell: str) -> str:
    statements = _statements(cell, "compile")
    if not statements:
        raise Fail("no .compile(…) call in the cell")
    namespace = reference()
    namespace["model"], namespace["encoder"] = namespace["make_vae"]()
    _run(statements, namespace)
    _mse_and_adam(namespace["model"], "the model")
    return "compiled with the mean squared error and Adam"


class _FitRecorder:
    def __init__(self):
        self.calls = []

    def fit(self, *args, **kwargs):
        self.calls.append((args, kwargs))

    def compile(self, *args, **kwargs):
        pass


def check_fit(cell: str) -> str:
    statements = _statements(cell, "fit")
    if not statements:
        raise Fail("no .fit(…) call in the cell")
    names = {"x_train": np.zeros((3, 784)), "x_test": np.zeros((3, 784)),
             "y_train": np.zeros(3), "y_test": np.zeros(3)}
    namespace = {**reference(), **names, "model": _FitRecorder()}
    _run(statements, namespace)
    calls = namespace["model"].calls
    if len(calls) != 1:
        raise Fail(f"model.fit is called {len(calls)} times, expected once")
    args, kwargs = calls[0]
    bound = dict(zip(("x", "y", "batch_size", "epochs"), args)) | kwargs
    which = {id(v): k for k, v in names.items()}
    x, y = bound.get("x"), bound.get("y")
    if id(x) != id(names["x_train"]):
        raise Fail(f"fits on {which.get(id(x), 'something else')}, expected x_train")
    if y is None:
        raise Fail("fit has no targets: a VAE reconstructs its input, so y is x_train too")
    if id(y) != id(names["x_train"]):
        raise Fail(f"the targets are {which.get(id(y), 'something else')}: a VAE reconstructs its "
                   f"input, so y is x_train")
    epochs = bound.get("epochs", 1)
    if epochs != 2:
        raise Fail(f"fits for {epochs} epoch(s), the lab fits 2")
    return "fits x_train to x_train for 2 epochs"


def check_annealing(cell: str) -> str:
    namespace = with_student_definitions(cell)
    callback_class, sampling = namespace.get("KLAnnealingCallback"), namespace["TutorialSampling"]
    if callback_class is None:
        raise Fail("the cell defines no class KLAnnealingCallback")
    x = keras.Input((4,))
    z = sampling()([keras.layers.Dense(2)(x), keras.layers.Dense(2)(x)])
    model = keras.Model(x, z)
    layer = next(l for l in model.layers if isinstance(l, sampling))
    for start, duration, epochs in ((4, 8, 20), (2, 2, 5)):
        callback = callback_class(start, duration)
        callback.set_model(model)
        got = []
        with contextlib.redirect_stdout(io.StringIO()):
            callback.on_train_begin()
            for epoch in range(epochs):
                callback.on_epoch_begin(epoch)
                got.append(float(_numbers(layer.kl_weight.value)))
                callback.on_epoch_end(epoch)
        want = [schedules.linear(e, start, duration) for e in range(1, epochs + 1)]
        wrong = [e for e in range(epochs) if abs(got[e] - want[e]) > 1e-6]
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
                       f"{[round(w, 3) for w in got]})")
    return "weights per epoch are the lab's (0 until epoch_start, then linear to 1)"


def check_fresh_vae(cell: str) -> str:
    loops = [n for n in _definitions(cell, "the exercise's cell") if isinstance(n, ast.For)
             and isinstance(n.target, ast.Tuple)
             and [getattr(e, "id", None) for e in n.target.elts] == ["name", "kl_scale"]]
    if not loops:
        raise Fail("no loop `for name, kl_scale in …` in the cell")
    body = []
    for node in loops[0].body:
        if any(isinstance(n, ast.Name) and n.id in ("callback", "KLAnnealingCallback")
               for n in ast.walk(node)):
            break
        body.append(node)
    expected_sizes = None
    for kl_scale in (1 / 784, 1.0):
        namespace = reference()
        if expected_sizes is None:
            expected_sizes = _dense_sizes(namespace["make_vae"]()[0], namespace)
        previous = namespace["make_vae"]()[0]
        namespace.update(model=previous, name="annealed", kl_scale=kl_scale)
        _run(body, namespace)
        model = namespace.get("annealed_model")
        if not isinstance(model, keras.Model):
            raise Fail("the loop body does not set annealed_model to a Keras model")
        if model is previous:
            raise Fail("annealed_model is the model trained before: build a fresh one with "
                       "make_vae")
        scales = [l.kl_scale for l in model.layers if isinstance(l, namespace["TutorialSampling"])]
        if scales != [kl_scale]:
            raise Fail(f"the sampling layer's kl_scale is {scales}, the loop's kl_scale is "
                       f"{kl_scale:g}: pass it to make_vae")
        sizes = _dense_sizes(model, namespace)
        if sizes != expected_sizes:
            raise Fail(f"the dense layers have {sizes} units, the lab's VAE {expected_sizes}")
        _mse_and_adam(model, "annealed_model")
    return f"a fresh VAE per KL scale, dense layers {expected_sizes}, MSE and Adam"


def _dense_sizes(model, namespace) -> list[int]:
    return [l.units for l in model.layers if isinstance(l, namespace["TutorialDense"])]


CHECKS = {"kl_normal": check_kl_normal, "sampling_kl": check_sampling_kl,
          "sampling_z": check_sampling_z, "compile": check_compile, "fit": check_fit,
          "annealing": check_annealing, "fresh_vae": check_fresh_vae}


def grade(exercise: str, cell: str) -> dict:
    """``{"status", "message"}`` of one exercise; any exception from the student's code fails it."""
    keras.utils.set_random_seed(0)
    try:
        return {"status": "pass", "message": CHECKS[exercise](cell)}
    except Fail as exc:
        return {"status": "fail", "message": str(exc)}
    except NotImplementedError as exc:
        return {"status": "fail", "message": f"still raises NotImplementedError ({exc})"}
    except Exception as exc:  # the student's code may raise anything  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return {"status": "fail", "message": f"raised {type(exc).__name__}: {first}"}


def main() -> None:
    request = json.loads(sys.stdin.read())
    print(json.dumps(grade(request["exercise"], request["cell"])), flush=True)


if __name__ == "__main__":
    main()
