"""The tutorial's seven exercises, where each lives in a submission, and the inputs the
grader draws for each from its seed.

Everything here runs on the grader's side and reads submissions as text only: notebooks
are parsed (nbformat, Jupytext), never executed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from vaelab.core.config import UsageError
from vaelab.teaching.tutorial import DEFAULT_SOURCE, parse_blocks

SEED_RANGE = 2**32  # --seed takes 0 … 2**32 − 1


@dataclasses.dataclass(frozen=True)
class Exercise:
    name: str       # the key in reports, and the probe's and the verdict's name
    title: str      # one line for the student
    anchor: str     # text that only the exercise's cell contains
    block: int      # index of its marked block in the tutorial source (for its hint)


EXERCISES = [
    Exercise("kl_normal", "1(c) formula (a) as a function", "def kl_normal", 0),
    Exercise("sampling_kl", "the sampling layer's KL term", "class TutorialSampling", 1),
    Exercise("sampling_z", "the reparametrization trick", "class TutorialSampling", 2),
    Exercise("compile", "compile the VAE", "def make_vae", 3),
    Exercise("fit", "fit the VAE", "def make_vae", 4),
    Exercise("annealing", "the annealing weight per epoch", "class KLAnnealingCallback", 5),
    Exercise("fresh_vae", "a fresh VAE per KL scale", "for name, kl_scale in", 6),
]
BY_NAME = {e.name: e for e in EXERCISES}


def hints() -> list[str]:
    """The hint of each marked block of the tutorial, in order."""
    lines = DEFAULT_SOURCE.read_text(encoding="utf-8").splitlines(keepends=True)
    return [block.hint for block in parse_blocks(lines, str(DEFAULT_SOURCE))]


def code_cells(path) -> list[str]:
    """The code cells of a notebook or percent-format file; ``UsageError`` if it is neither."""
    import jupytext
    import nbformat

    path = Path(path)
    if path.suffix not in (".ipynb", ".py"):
        raise UsageError(f"{path}: expected a notebook (.ipynb) or a Python file (.py)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        if path.suffix == ".ipynb":
            notebook = nbformat.reads(text, as_version=4)
        else:
            notebook = jupytext.reads(text, fmt="py:percent")
        return [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    except Exception as exc:  # nbformat/jupytext raise many kinds for damaged files  # noqa: BLE001
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UsageError(f"{path} is not a readable notebook ({reason})") from None


def locate(cells: list[str]) -> dict[str, str | None]:
    """The cell of each exercise (``None`` where its anchor is in no cell)."""
    return {e.name: next((c for c in cells if e.anchor in c), None) for e in EXERCISES}


def still_raises(cell: str, hint: str) -> bool:
    """Whether the student copy's ``raise NotImplementedError('TODO: <hint>')`` is still
    there (a line of code, not a comment)."""
    return any(line.strip().startswith("raise NotImplementedError") and hint in line
               for line in cell.splitlines())


def submissions(arguments) -> list[Path]:
    """The files to grade: each FILE as given, and every ``.ipynb`` and ``.py`` under each
    folder (sorted; hidden folders and ``.ipynb_checkpoints`` skipped). ``UsageError`` for
    a folder without any, or a path that does not exist."""
    found = []
    for argument in map(Path, arguments):
        if argument.is_dir():
            inside = sorted(p for p in argument.rglob("*")
                            if p.suffix in (".ipynb", ".py") and p.is_file() and not any(
                                part.startswith(".") for part in p.relative_to(argument).parts))
            if not inside:
                raise UsageError(f"{argument} is a folder with no submission in it (no .ipynb "
                                 f"or .py file)")
            found += inside
        else:
            found.append(argument)
    return found


# ------------------------------------------------------------------- the grader's inputs


def draw(seed: int) -> dict[str, dict]:
    """Every exercise's inputs for one grading, drawn from ``seed`` (the same seed, the
    same inputs): what the probes feed the student's code, and what the verdicts compare
    with. Plain JSON values (lists of floats)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_RANGE:
        raise UsageError(f"--seed must be an integer from 0 to {SEED_RANGE - 1}, received {seed}")
    inputs = {}
    for index, exercise in enumerate(EXERCISES):
        rng = np.random.default_rng([seed, index])
        inputs[exercise.name] = _jsonable(DRAWS[exercise.name](rng))
    return inputs


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _kl_normal(rng) -> dict:
    # σ of the KL(p‖p) case stays away from 1, where the handout's 2σ₁ typo also gives 0.
    return {"mean_q": rng.normal(0, 2, 1000), "std_q": rng.uniform(0.2, 3, 1000),
            "mean_p": rng.normal(0, 2, 1000), "std_p": rng.uniform(0.2, 3, 1000),
            "same": [rng.uniform(-2, 2), rng.uniform(1.5, 3)]}


def _sampling_kl(rng) -> dict:
    return {"mean": rng.normal(0, 1, (8, 4)), "log_var": rng.normal(0, 0.7, (8, 4)),
            "kl_scale": rng.uniform(0.2, 1.0), "kl_weight": rng.uniform(0.3, 0.9),
            "seed": int(rng.integers(2**31))}


def _sampling_z(rng) -> dict:
    # Each log-variance is kept where exp(log_var), log_var² and exp(log_var)² (the right
    # variance and the two usual mistakes) differ by far more than the sampling error.
    positive, negative = rng.uniform(0.3, 1.4, 3), rng.uniform(-1.6, -1.0, 3)
    return {"mean": rng.uniform(-2, 2, 3), "log_var": np.where(rng.random(3) < 0.5, positive,
                                                                negative),
            "n": 20000, "seed": int(rng.integers(2**31))}


def _compiled(rng) -> dict:
    """Inputs that show what a compiled model's loss and optimizer do: the loss on two
    arrays, and two optimizer steps from a start value with two gradients."""
    return {"y_true": rng.uniform(0, 1, (4, 6)), "y_pred": rng.uniform(0, 1, (4, 6)),
            "start": rng.choice([-1.0, 1.0], 5) * rng.uniform(5, 10, 5),
            "gradients": rng.normal(0, 1, (2, 5))}


def _fit(rng) -> dict:
    return {"x_train": rng.uniform(0, 1, (6, 784)).astype(np.float32),
            "x_test": rng.uniform(0, 1, (4, 784)).astype(np.float32),
            "y_train": rng.integers(0, 10, 6), "y_test": rng.integers(0, 10, 4)}


def _annealing(rng) -> dict:
    start, duration = int(rng.integers(2, 7)), int(rng.integers(2, 9))
    short_start, short_duration = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    return {"schedules": [[start, duration, start + duration + int(rng.integers(1, 5))],
                          [short_start, short_duration,
                           short_start + short_duration + int(rng.integers(1, 3))]]}


def _fresh_vae(rng) -> dict:
    return {"kl_scales": [rng.uniform(0.5, 2.0) / 784, rng.uniform(0.5, 2.0)], **_compiled(rng)}


DRAWS = {"kl_normal": _kl_normal, "sampling_kl": _sampling_kl, "sampling_z": _sampling_z,
         "compile": _compiled, "fit": _fit, "annealing": _annealing, "fresh_vae": _fresh_vae}
