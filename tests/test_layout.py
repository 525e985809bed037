"""The package's layout by role, checked: each subpackage imports only those below it.

paths, choices, machine, signals → data → core → dist → store → analysis → training →
experiments / teaching → cli (``docs/architecture.md``). Function-level imports count too.
"""

import ast
import sys
from pathlib import Path

import vaelab

PACKAGE = Path(vaelab.__file__).parent
RANK = {"paths": 0, "choices": 0, "machine": 0, "signals": 0, "data": 1, "core": 2, "dist": 3,
        "store": 4, "analysis": 5, "training": 6, "experiments": 7, "teaching": 7, "cli": 8}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] == "resources":  # the tutorial's own source: a student's script
            continue
        yield ".".join(("vaelab", *parts)).removesuffix(".__init__"), path


def is_package(name: str) -> bool:
    return (PACKAGE.joinpath(*name.split(".")[1:]) / "__init__.py").exists()


def imports(name: str, path: Path) -> set[str]:
    """Every vaelab module ``path`` imports (``from vaelab.x import y``: ``vaelab.x.y`` when
    that is a module, else ``vaelab.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "vaelab"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "vaelab":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.joinpath(*full.split(".")[1:]).with_suffix(".py").exists()
                             or is_package(full))
                found.add(full if is_module else node.module)
    return found - {name}


def role(module: str) -> str | None:
    """The subpackage (or bottom module) ``module`` belongs to; ``None`` for the root facade."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_every_module_has_a_role():
    assert not [name for name, _ in modules() if role(name) is None
                and name not in ("vaelab", "vaelab.__main__")]


def test_each_role_imports_only_the_roles_below_it():
    wrong = []
    for name, path in modules():
        mine = role(name)
        if mine is None:
            continue
        for target in imports(name, path):
            theirs = role(target)
            if theirs is None:  # the package itself (``import vaelab``): already imported
                continue
            if theirs != mine and RANK[theirs] >= RANK[mine]:
                wrong.append(f"{name} ({mine}) imports {target} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_models_never_import_distribution_or_files_and_nothing_imports_the_cli():
    for name, path in modules():
        targets = imports(name, path)
        if name.startswith("vaelab.core"):
            assert not {t for t in targets if role(t) in ("dist", "store")}, name
        if name not in ("vaelab.__main__",) and role(name) != "cli":
            assert not {t for t in targets if role(t) == "cli"}, name


def test_the_check_sees_function_level_imports():
    runner = PACKAGE / "experiments" / "runner.py"
    assert "vaelab.training.population" in imports("vaelab.experiments.runner", runner)
    commands = PACKAGE / "cli" / "commands.py"
    assert "vaelab.training.trainer" in imports("vaelab.cli.commands", commands)  # in a handler


def test_the_parser_needs_nothing_but_the_choices():
    """What the console script loads before Keras (vaelab_cli): the parser and the choices."""
    assert imports("vaelab.cli.parser", PACKAGE / "cli" / "parser.py") == {"vaelab.choices"}
    assert imports("vaelab.choices", PACKAGE / "choices.py") == set()
    assert imports("vaelab.cli", PACKAGE / "cli" / "__init__.py") == {"vaelab.cli.commands",
                                                                      "vaelab.cli.parser"}


def test_the_old_module_names_are_the_new_modules_with_a_warning():
    import importlib
    import warnings

    from vaelab.core import config
    from vaelab.core.models import vae
    from vaelab.training import population

    pairs = {"vaelab.config": config, "vaelab.models.vae": vae,
             "vaelab.population": population}
    for old, module in pairs.items():
        sys.modules.pop(old, None)  # as in a fresh interpreter
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert importlib.import_module(old) is module
        assert any(f"{old} is now {module.__name__}" in str(w.message) for w in caught)
    from vaelab.training import Run, train
    assert (vaelab.train, vaelab.Run, vaelab.TrainConfig) == (train, Run, config.TrainConfig)
