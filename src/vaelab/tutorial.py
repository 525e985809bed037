"""Student and solution versions of the tutorial from its exercise markers.

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
from pathlib import Path

from vaelab import runs
from vaelab.config import UsageError
from vaelab.paths import RESOURCES

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


def build(out_dir, source=None, overwrite: bool = False) -> dict[str, Path]:
    """Write ``solution/<name>`` and ``student/<name>`` under ``out_dir``; return their paths.

    Every target is checked before anything is written. A student copy that differs from
    what would be written (a student's edits) is kept unless ``overwrite``.
    """
    source = Path(source) if source is not None else DEFAULT_SOURCE
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"cannot read the tutorial {source}: {reason}") from None
    versions = {kind: render(text, kind == "student", str(source)) for kind in ("solution", "student")}
    out_dir = Path(out_dir)
    paths = {kind: out_dir / kind / source.name for kind in versions}
    for kind, path in paths.items():
        for folder in (path.parent, *path.parent.parents):  # the nearest existing folder up
            if folder.exists():
                if not folder.is_dir():
                    raise UsageError(f"--out {out_dir}: {folder} exists and is not a folder")
                break
        if path.is_dir():
            raise UsageError(f"--out {out_dir}: {path} is a folder")
    student = paths["student"]
    if (student.is_file() and not overwrite
            and student.read_text(encoding="utf-8", errors="replace") != versions["student"]):
        raise UsageError(f"{student} has been edited; pass --overwrite to replace it")
    for kind, rendered in versions.items():
        try:
            paths[kind].parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out {out_dir} cannot be created: {exc.strerror}") from None
        runs.write_text(paths[kind], rendered)
    return paths
