"""The ``vaelab`` console script: the command line is parsed before the vaelab package loads.

``import vaelab`` imports Keras and JAX (it registers vaelab's Keras classes, which needs
Keras), about 1.5 s on a laptop. A console script entering ``vaelab.cli`` would pay that
before it could print ``--help``. So the script enters here, outside the package, and:

1. makes the ``vaelab`` package module without running its ``__init__`` yet, the first of
   the two steps of any import (:func:`importlib.util.module_from_spec`), so that
   :mod:`vaelab.cli`, :mod:`vaelab.cli.parser` and :mod:`vaelab.choices`, which import
   nothing heavy, load;
2. parses: ``--help``, ``--version`` and a mistyped option end the process here;
3. runs the package's ``__init__`` (the second step, exactly as ``import vaelab`` would)
   and the command.

Nothing else runs between the two steps, so the program sees an ordinary ``import
vaelab``; if parsing raises, the half-made modules are removed again. (Chosen over a lazy
``vaelab/__init__``, which would no longer register the Keras classes on import, and over a
second copy of the choices outside the package, which could drift.)
"""

from __future__ import annotations

import importlib.util
import sys


def main(argv: list[str] | None = None) -> int:
    if "vaelab" in sys.modules:  # already imported (in a program): parse and run as usual
        from vaelab.cli import main as vaelab_main

        return vaelab_main(argv)
    spec = importlib.util.find_spec("vaelab")
    package = importlib.util.module_from_spec(spec)
    sys.modules["vaelab"] = package
    whole = []

    def finish_import():  # the rest of `import vaelab`: Keras, registration
        spec.loader.exec_module(package)
        whole.append(True)

    try:
        from vaelab.cli import main as vaelab_main

        return vaelab_main(argv, before_run=finish_import)
    except BaseException:
        if not whole:  # --help, --version, a usage error: leave nothing half-made
            for name in [n for n in sys.modules if n == "vaelab" or n.startswith("vaelab.")]:
                del sys.modules[name]
        raise
