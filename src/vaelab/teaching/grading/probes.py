"""The probes: what a student's code does on the grader's inputs, run inside the
sandbox as ``python -I -m vaelab.teaching.grading.probes``.

The grader sends ``{"exercise", "cell", "inputs", "limits", "uid"}`` on standard input.
The probe first confines itself (the hard ``setrlimit`` limits, then, under a root
grader, an unprivileged uid), then runs the student's definitions (or statements) from
the cell next to the tutorial solution's code for everything else, calls them on the
inputs, and writes what came out as one JSON object on its original standard output
(:mod:`vaelab.teaching.grading.wire`): numbers and arrays, never a verdict. The student's own
output goes to standard error. An exception becomes ``{"error": "…"}``.

Nothing here decides anything: the student's code shares this process and may have
changed any of it. :mod:`vaelab.teaching.grading.verdicts` decides, in the grader's process.
"""

from __future__ import annotations

import ast
import json
import os
import sys

INPUT_SIZE = 784
KEEP = ("ClassDef", "FunctionDef", "Import", "ImportFrom")


class Missing(Exception):
    """The cell lacks what the exercise asks for; the message says what."""


def confine(limits: dict, uid: int | None) -> None:
    """Hard resource limits on this process (and all it starts), then the uid, if any."""
    import resource

    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


# ---------------------------------------------------------------- running the student's code


def _parse(source: str, what: str) -> list[ast.stmt]:
    try:
        return ast.parse(source).body
    except SyntaxError as exc:
        raise Missing(f"syntax error in {what}, line {exc.lineno}: {exc.msg}") from None


def _run(nodes: list[ast.stmt], namespace: dict) -> None:
    exec(compile(ast.Module(body=nodes, type_ignores=[]), "<submission>", "exec"),  # noqa: S102
         namespace)


def _base() -> dict:
    import keras
    import numpy as np
    from keras import ops

    import vaelab

    return {"keras": keras, "np": np, "ops": ops, "vaelab": vaelab, "input_size": INPUT_SIZE,
            "__name__": "submission"}


def reference() -> dict:
    """The tutorial solution's classes, functions and imports (and its model sizes), run."""
    from vaelab.teaching.tutorial import DEFAULT_SOURCE, render

    namespace = _base()
    source = render(DEFAULT_SOURCE.read_text(encoding="utf-8"), student=False)
    _run([node for node in _parse(source, "the tutorial")
          if type(node).__name__ in KEEP or (isinstance(node, ast.Assign) and any(
              isinstance(t, ast.Tuple) and {getattr(e, "id", "") for e in t.elts}
              == {"latent_dim", "hidden_dim"} for t in node.targets))], namespace)
    return namespace


def with_student_definitions(cell: str) -> dict:
    """The reference namespace with the cell's functions, classes and imports run over it."""
    namespace = reference()
    _run([n for n in _parse(cell, "the exercise's cell") if type(n).__name__ in KEEP], namespace)
    return namespace


def statements(cell: str, method: str) -> list[ast.stmt]:
    """Top-level statements of the cell that call ``.<method>(…)``."""
    found = [node for node in _parse(cell, "the exercise's cell")
             if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) and any(
                 isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                 and n.func.attr == method for n in ast.walk(node))]
    if not found:
        raise Missing(f"no .{method}(…) call in the cell")
    return found


def array(value):
    """Whatever the student's code returned, as a NumPy array (for the report)."""
    import numpy as np
    from keras import ops

    if not isinstance(value, (np.ndarray, np.generic, int, float)):
        value = ops.convert_to_numpy(value)
    return np.asarray(value)


def _defined(namespace: dict, name: str, what: str):
    if namespace.get(name) is None:
        raise Missing(f"the cell defines no {what} {name}")
    return namespace[name]


# ------------------------------------------------------------------------------ probes


def probe_kl_normal(cell: str, inputs: dict) -> dict:
    import numpy as np

    kl_normal = _defined(with_student_definitions(cell), "kl_normal", "function")
    args = [np.asarray(inputs[k], np.float64) for k in ("mean_q", "std_q", "mean_p", "std_p")]
    mean, std = inputs["same"]
    return {"values": array(kl_normal(*args)), "same": array(kl_normal(mean, std, mean, std))}


def _sampling_layer(cell: str, kl_scale: float, seed: int, shape: tuple):
    layer = _defined(with_student_definitions(cell), "TutorialSampling", "class")(
        kl_scale=kl_scale, seed=seed)
    layer.build([shape, shape])
    return layer


def probe_sampling_kl(cell: str, inputs: dict) -> dict:
    from keras import ops

    mean, log_var = (ops.convert_to_tensor(inputs[k], "float32") for k in ("mean", "log_var"))
    layer = _sampling_layer(cell, inputs["kl_scale"], inputs["seed"], tuple(mean.shape))
    layer.kl_weight.assign(inputs["kl_weight"])
    try:
        layer.call([mean, log_var])
    except NotImplementedError:
        pass  # the next exercise (z) is not done yet; the loss is added before it
    losses = list(layer.losses)
    return {"count": len(losses), "loss": array(losses[-1]) if losses else None}


def probe_sampling_z(cell: str, inputs: dict) -> dict:
    import numpy as np
    from keras import ops

    n = inputs["n"]
    batch = [ops.convert_to_tensor(np.repeat(np.asarray([inputs[k]], np.float32), n, 0))
             for k in ("mean", "log_var")]
    layer = _sampling_layer(cell, 1.0, inputs["seed"], (n, 3))
    first, second = array(layer.call(batch)), array(layer.call(batch))
    again = _sampling_layer(cell, 1.0, inputs["seed"], (n, 3))
    return {"first": first, "second": second, "repeat": array(again.call(batch))}


def compiled(model, inputs: dict) -> dict:
    """What a compiled model's loss gives on the grader's arrays, and where its optimizer
    moves a variable in two steps with the grader's gradients."""
    import keras
    import numpy as np

    if not isinstance(model, keras.Model):
        return {"compiled": False, "what": f"a {type(model).__name__}, not a Keras model"}
    if model.optimizer is None or getattr(model, "compiled", True) is False:
        return {"compiled": False, "what": "not compiled"}
    loss = model.loss
    name = loss if isinstance(loss, str) else getattr(loss, "name",
                                                      getattr(loss, "__name__", repr(loss)))
    value = array(keras.losses.get(loss)(np.asarray(inputs["y_true"], np.float32),
                                         np.asarray(inputs["y_pred"], np.float32)))
    variable = keras.Variable(np.asarray(inputs["start"], np.float32))
    steps = []
    for gradient in inputs["gradients"]:
        model.optimizer.apply_gradients([(np.asarray(gradient, np.float32), variable)])
        steps.append(array(variable.value))
    return {"compiled": True, "loss_name": str(name), "loss": value,
            "optimizer": type(model.optimizer).__name__, "steps": np.stack(steps)}


def probe_compile(cell: str, inputs: dict) -> dict:
    body = statements(cell, "compile")
    namespace = reference()
    namespace["model"], namespace["encoder"] = namespace["make_vae"]()
    _run(body, namespace)
    return compiled(namespace["model"], inputs)


class FitRecorder:
    """Stands in for the model: records the arguments of each ``fit`` call."""

    def __init__(self):
        self.calls = []

    def fit(self, *args, **kwargs):
        self.calls.append(dict(zip(("x", "y", "batch_size", "epochs"), args)) | kwargs)

    def compile(self, *args, **kwargs):
        pass


def probe_fit(cell: str, inputs: dict) -> dict:
    import numpy as np

    body = statements(cell, "fit")
    arrays = {"x_train": np.asarray(inputs["x_train"], np.float32),
              "x_test": np.asarray(inputs["x_test"], np.float32),
              "y_train": np.asarray(inputs["y_train"]), "y_test": np.asarray(inputs["y_test"])}
    recorder = FitRecorder()
    _run(body, {**reference(), **arrays, "model": recorder})
    report = {"calls": len(recorder.calls)}
    if recorder.calls:
        call = recorder.calls[0]
        for key in ("x", "y"):
            report[key] = None if call.get(key) is None else array(call[key])
        epochs = call.get("epochs", 1)
        report["epochs"] = epochs if isinstance(epochs, int) else repr(epochs)[:40]
    return report


def probe_annealing(cell: str, inputs: dict) -> dict:
    import keras

    namespace = with_student_definitions(cell)
    callback_class = _defined(namespace, "KLAnnealingCallback", "class")
    sampling = namespace["TutorialSampling"]
    x = keras.Input((4,))
    model = keras.Model(x, sampling()([keras.layers.Dense(2)(x), keras.layers.Dense(2)(x)]))
    layer = next(layer for layer in model.layers if isinstance(layer, sampling))
    weights = []
    for start, duration, epochs in inputs["schedules"]:
        callback = callback_class(start, duration)
        callback.set_model(model)
        callback.on_train_begin()
        got = []
        for epoch in range(epochs):
            callback.on_epoch_begin(epoch)
            got.append(array(layer.kl_weight.value))
            callback.on_epoch_end(epoch)
        weights.append(array(got))
    return {"weights": weights}


def probe_fresh_vae(cell: str, inputs: dict) -> dict:
    import keras

    loops = [n for n in _parse(cell, "the exercise's cell") if isinstance(n, ast.For)
             and isinstance(n.target, ast.Tuple)
             and [getattr(e, "id", None) for e in n.target.elts] == ["name", "kl_scale"]]
    if not loops:
        raise Missing("no loop `for name, kl_scale in …` in the cell")
    body = []
    for node in loops[0].body:  # up to the lines that use the callback (the lab's, given)
        if any(isinstance(n, ast.Name) and n.id in ("callback", "KLAnnealingCallback")
               for n in ast.walk(node)):
            break
        body.append(node)
    models = []
    for kl_scale in inputs["kl_scales"]:
        namespace = reference()
        previous = namespace["make_vae"]()[0]
        namespace.update(model=previous, name="annealed", kl_scale=kl_scale)
        _run(body, namespace)
        model = namespace.get("annealed_model")
        if not isinstance(model, keras.Model):
            raise Missing("the loop body does not set annealed_model to a Keras model")
        models.append({
            "previous": model is previous,
            "kl_scales": [float(layer.kl_scale) for layer in model.layers
                          if isinstance(layer, namespace["TutorialSampling"])],
            "units": [int(layer.units) for layer in model.layers
                      if isinstance(getattr(layer, "units", None), int)],
            "compiled": compiled(model, inputs)})
    return {"models": models}


PROBES = {"kl_normal": probe_kl_normal, "sampling_kl": probe_sampling_kl,
          "sampling_z": probe_sampling_z, "compile": probe_compile, "fit": probe_fit,
          "annealing": probe_annealing, "fresh_vae": probe_fresh_vae}


def probe(exercise: str, cell: str, inputs: dict) -> dict:
    """The report of one exercise; an exception from the student's code becomes ``error``."""
    import keras

    keras.utils.set_random_seed(0)
    try:
        return PROBES[exercise](cell, inputs)
    except Missing as exc:
        return {"error": str(exc)}
    except NotImplementedError as exc:
        return {"error": f"still raises NotImplementedError ({exc})"}
    except Exception as exc:  # the student's code may raise anything  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return {"error": f"raised {type(exc).__name__}: {first}"}


def main() -> None:
    report = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # what the student's code prints goes to standard error
    request = json.loads(sys.stdin.read())
    confine(request["limits"], request.get("uid"))
    if request["exercise"] is None:  # the grader's check that the sandbox works
        import vaelab.teaching.grading.wire  # noqa: F401

        reference()  # Keras, vaelab and the tutorial's solution, under the limits
        report.write(json.dumps({"ready": True}))
    else:
        from vaelab.teaching.grading.wire import encode

        result = probe(request["exercise"], request["cell"], request["inputs"])
        report.write(json.dumps(encode(result)))
    report.flush()
    os._exit(0)  # no interpreter shutdown: nothing the student registered runs after this


if __name__ == "__main__":
    main()
