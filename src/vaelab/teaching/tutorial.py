"""Student and solution versions of the tutorial from its exercise markers, as notebooks
and as percent-format Python files.

A marked block is::

    #!hwbegin TODO <hint>
    <solution lines>
    #!hwend

The solution version drops the two marker lines and keeps the code; the student
version replaces the whole block by ``# TODO: <hint>`` and a line that raises
``NotImplementedError("TODO: <hint>")``, at the indentation of the ``#!hwbegin``
line. Blocks may not nest; a block needs its hint and its end.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import threading
from pathlib import Path

from vaelab import choices, signals
from vaelab.core.config import NotebookFailed, UsageError
from vaelab.paths import RESOURCES
from vaelab.store import files as store

BEGIN, END = "#!hwbegin", "#!hwend"
DEFAULT_SOURCE = RESOURCES / "lab11.py"  # package data: works from an installed wheel


class MarkerError(UsageError):
    """A malformed exercise marker; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Block:
    begin: int       # 0-based line index of the #!hwbegin line
    end: int         # 0-based line index of the #!hwend line
    indent: str
    hint: str


def parse_blocks(lines: list[str], name: str = "<tutorial>") -> list[Block]:
    """The marked blocks of ``lines``; ``MarkerError`` for unclosed, nested, stray or hint-less ones."""
    blocks, open_at = [], None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if open_at is not None:
                raise MarkerError(f"{name}:{i + 1}: {BEGIN} inside the block opened at line "
                                  f"{open_at[0] + 1} (blocks cannot nest)")
            rest = stripped[len(BEGIN):].strip()
            if not rest.startswith("TODO") or not rest[4:].strip():
                raise MarkerError(f"{name}:{i + 1}: {BEGIN} needs a hint: "
                                  f"'{BEGIN} TODO <what to write>'")
            open_at = (i, line[:len(line) - len(line.lstrip())], rest[4:].strip())
        elif stripped.startswith(END):
            if open_at is None:
                raise MarkerError(f"{name}:{i + 1}: {END} without a {BEGIN}")
            blocks.append(Block(open_at[0], i, open_at[1], open_at[2]))
            open_at = None
    if open_at is not None:
        raise MarkerError(f"{name}:{open_at[0] + 1}: {BEGIN} is never closed by {END}")
    return blocks


def render(text: str, student: bool, name: str = "<tutorial>") -> str:
    """The solution (``student=False``) or student version of a marked source."""
    lines = text.splitlines(keepends=True)
    blocks = parse_blocks(lines, name)
    out, position = [], 0
    for block in blocks:
        out += lines[position:block.begin]
        if student:
            message = f"TODO: {block.hint}"
            out.append(f"{block.indent}# {message}\n")
            out.append(f"{block.indent}raise NotImplementedError({message!r})\n")
        else:
            out += lines[block.begin + 1:block.end]
        position = block.end + 1
    out += lines[position:]
    return "".join(out)


FORMATS = choices.TUTORIAL_FORMATS


def to_notebook(text: str) -> str:
    """A percent-format source as notebook JSON: markdown cells for the text and math, code
    cells for the code (Jupytext), a Python 3 kernel, and cell ids numbered in order so
    that the same source always gives the same file."""
    import jupytext
    import nbformat

    notebook = jupytext.reads(text, fmt="py:percent")
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{i}"
    return nbformat.writes(notebook)


def targets(out_dir: Path, source: Path, text: str, fmt: str) -> dict[str, tuple[Path, str]]:
    """``{kind: (path, content)}`` of every file ``build`` writes for ``fmt``."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, received {fmt!r}")
    versions = {kind: render(text, kind == "student", str(source))
                for kind in ("solution", "student")}
    found = {}
    if fmt in ("both", "ipynb"):
        for kind, rendered in versions.items():
            found[f"{kind} notebook"] = (out_dir / f"{source.stem}-{kind}.ipynb",
                                         to_notebook(rendered))
    if fmt in ("both", "py"):
        for kind, rendered in versions.items():
            found[kind] = (out_dir / kind / source.name, rendered)
    return found


def build(out_dir, source=None, overwrite: bool = False, fmt: str = "both") -> dict[str, Path]:
    """Write the student and solution copies under ``out_dir``; return their paths.

    ``fmt="ipynb"``: ``<name>-student.ipynb`` and ``<name>-solution.ipynb``; ``"py"``:
    ``student/<name>.py`` and ``solution/<name>.py`` (percent format); ``"both"``: all four.
    Every target is checked before anything is written. A student copy that differs from
    what would be written (a student's edits) is kept unless ``overwrite``.
    """
    source = Path(source) if source is not None else DEFAULT_SOURCE
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"cannot read the tutorial {source}: {reason}") from None
    out_dir = Path(out_dir)
    files = targets(out_dir, source, text, fmt)
    for kind, (path, content) in files.items():
        for folder in (path.parent, *path.parent.parents):  # the nearest existing folder up
            if folder.exists():
                if not folder.is_dir():
                    raise UsageError(f"--out {out_dir}: {folder} exists and is not a folder")
                if not os.access(folder, os.W_OK | os.X_OK):
                    raise UsageError(f"--out {out_dir}: {folder} is not a writable folder")
                break
        if path.is_dir():
            raise UsageError(f"--out {out_dir}: {path} is a folder")
        if (kind.startswith("student") and path.is_file() and not overwrite
                and path.read_text(encoding="utf-8", errors="replace") != content):
            raise UsageError(f"{path} has been edited; pass --overwrite to replace it")
    for path, content in files.values():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out {out_dir} cannot be created: {exc.strerror}") from None
        store.write_text(path, content)
    return {kind: path for kind, (path, _) in files.items()}


def _notebook_modules(html: bool = False):
    """nbclient and nbformat, once ipykernel (and nbconvert for ``html``) are there too."""
    try:
        import ipykernel  # noqa: F401  (the kernel nbclient starts)
        import nbclient
        import nbformat

        if html:
            import nbconvert  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"running notebooks needs nbclient, ipykernel and nbconvert ({exc.name} "
                         f"is missing): pip install 'vaelab[notebooks]'") from None
    return nbclient, nbformat


def read_notebook(path):
    """A notebook file as an ``nbformat`` node; ``UsageError`` naming the file otherwise."""
    _, nbformat = _notebook_modules()
    path = Path(path)
    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, KeyError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UsageError(f"{path} is not a readable notebook ({reason})") from None


def run_notebook(path, out=None, quick: bool = False, html: bool = False,
                 cell_timeout: float = choices.NOTEBOOK_CELL_TIMEOUT) -> dict[str, Path]:
    """Execute a notebook top to bottom in a fresh Python 3 kernel (nbclient) and write the
    executed copy (default ``NAME-executed.ipynb`` beside it); ``html`` also renders it
    with nbconvert. ``quick`` runs the tutorial on its small subset. The kernel's working
    folder is the notebook's, so its figures are saved there. A cell may run at most
    ``cell_timeout`` seconds; on a time-out or Ctrl-C/SIGTERM the kernel is stopped, and
    its own error output (a traceback of the interrupted cell) is not shown.

    Raises:
        UsageError: not a notebook, an output path that cannot be written, or a
            ``cell_timeout`` that is not a positive number.
        NotebookFailed: a cell raised or ran too long; the message names the cell.
        Interrupted: SIGINT or SIGTERM (the kernel is stopped first).
    """
    if (isinstance(cell_timeout, bool) or not isinstance(cell_timeout, (int, float))
            or not math.isfinite(cell_timeout)
            or not 0 < cell_timeout <= choices.MAX_WAIT_SECONDS):
        raise UsageError(f"--timeout must be a positive number of seconds, at most "
                         f"{choices.MAX_WAIT_SECONDS}, received {cell_timeout!r}")
    nbclient, nbformat = _notebook_modules(html)
    from jupyter_client.kernelspec import NoSuchKernel
    from jupyter_client.manager import AsyncKernelManager

    path = Path(path)
    notebook = read_notebook(path)
    out = Path(out) if out is not None else path.with_name(f"{path.stem}-executed.ipynb")
    store.check_output_file(out)
    if html:
        store.check_output_file(out.with_suffix(".html"))
    env = {**os.environ, "VAELAB_TUTORIAL_QUICK": "1" if quick else ""}
    # The kernel's sockets listen on the loopback interface only; its warning that local
    # TCP is unencrypted is silenced (nothing leaves the machine).
    manager = AsyncKernelManager(kernel_name="python3", ip="127.0.0.1")
    client = nbclient.NotebookClient(notebook, km=manager, timeout=cell_timeout,
                                     extra_arguments=["--IPKernelApp.log_level=ERROR"],
                                     resources={"metadata": {"path": str(path.parent.resolve())}})
    try:
        _execute(client, env)
    except nbclient.exceptions.CellExecutionError as exc:
        code = [c for c in notebook.cells if c.cell_type == "code"]
        where = next((f"code cell {i}" for i, c in enumerate(code, start=1)
                      if any(o.get("output_type") == "error" for o in c.get("outputs", []))),
                     "a cell")
        detail = (exc.evalue or "").strip().splitlines()
        raise NotebookFailed(f"{path}: {where} raised {exc.ename}"
                             + (f": {detail[0]}" if detail else "")) from None
    except nbclient.exceptions.CellTimeoutError:
        _kill_kernel(client)
        where = _running_cell(notebook)
        raise NotebookFailed(f"{path}: {where} ran longer than {cell_timeout:g} s (--timeout); "
                             f"the kernel was stopped") from None
    except nbclient.exceptions.DeadKernelError:
        raise NotebookFailed(f"{path}: the kernel stopped unexpectedly while "
                             f"{_running_cell(notebook)} ran (out of memory, or killed)") from None
    except NoSuchKernel:
        raise UsageError("no python3 Jupyter kernel: pip install 'vaelab[notebooks]'") from None
    written = {"executed": out}
    store.write_text(out, nbformat.writes(notebook))
    if html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(notebook)
        written["html"] = out.with_suffix(".html")
        store.write_text(written["html"], body)
    return written


def _running_cell(notebook) -> str:
    """The code cell that was running when execution stopped: the last one with
    execution metadata, as "code cell N"."""
    code = [c for c in notebook.cells if c.cell_type == "code"]
    started = [i for i, c in enumerate(code, start=1)
               if c.get("metadata", {}).get("execution", {}).get("iopub.execute_input")]
    return f"code cell {started[-1]}" if started else "a cell"


def _execute(client, env: dict) -> None:
    """Run every cell in a worker thread, so that nbclient installs no signal handlers of its
    own (it does only in the main thread, and there it would turn Ctrl-C into a "dead
    kernel"); here Ctrl-C or SIGTERM (``signals.handled``, or Python's KeyboardInterrupt)
    kills the kernel and is raised as it came."""
    outcome: list[BaseException] = []

    def work():
        try:
            client.execute(env=env, stderr=subprocess.DEVNULL)  # cell errors come as outputs
        except BaseException as exc:  # handed to the main thread
            outcome.append(exc)

    worker = threading.Thread(target=work, name="vaelab-notebook", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
            signals.check()
    except (signals.Interrupted, KeyboardInterrupt):
        _kill_kernel(client)
        worker.join(30)
        raise
    if outcome:
        raise outcome[0]


def _kill_kernel(client) -> None:
    """SIGKILL to the kernel's process group, if it runs (it leads its own session)."""
    process = getattr(getattr(getattr(client, "km", None), "provisioner", None), "process", None)
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)  # reaped: no zombie left behind in a long-lived process
    except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
        pass
