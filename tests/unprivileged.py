"""Running a command as an ordinary user, so that permission tests can fail even as root.

CI runs as root, whom no file mode stops: a test of an unwritable folder would pass whatever
vaelab does. As root, :func:`unprivileged` runs the command as uid/gid 65534 (``nobody``)
with ``setpriv``, in a private mount namespace (``unshare``) where a tmpfs hides ``/root``
and the folders the interpreter needs are bound back at their own paths (a Python installed
under root's home is closed to other users). As anyone else, the command runs as that user.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from vaelab.teaching.grading import sandbox

NOBODY = 65534

ROOT = os.geteuid() == 0
CANNOT = ("as root, an ordinary user is made with unshare and setpriv, which this machine "
          "lacks" if ROOT and not (shutil.which("setpriv") and shutil.which("unshare")) else "")
needs_an_ordinary_user = pytest.mark.skipif(bool(CANNOT), reason=CANNOT or "-")


def as_nobody(command: list[str], needed: list[str], env: dict) -> list[str]:
    """``command`` run as uid/gid 65534 with no groups, in a private mount namespace where
    a tmpfs hides /root and the folders in ``needed`` are bound back at their paths (the
    interpreter may live under root's home, closed to others)."""
    script = ("set -e\n"
              "hold=$(mktemp -d)\n"
              'for p in "$@"; do [ "$p" = -- ] && break; mkdir -p "$hold$p"; '
              'mount --bind "$p" "$hold$p"; done\n'
              "mount -t tmpfs -o mode=755 tmpfs /root\n"
              'while [ "$1" != -- ]; do mkdir -p "$1"; mount --bind "$hold$1" "$1"; shift; done\n'
              "shift\n"
              f'exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups -- "$@"\n')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *needed,
            "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *command]


def unprivileged(command: list[str], env: dict) -> list[str]:
    """``command`` with exactly the environment ``env``, as an ordinary user (see above)."""
    if not ROOT:
        return ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *command]
    needed = sorted({p for p in sandbox.python_paths() if p.startswith("/root/")})
    return as_nobody(command, needed, env)


def open_folder() -> Path:
    """A new folder everyone may use (pytest's own are closed to other users)."""
    folder = Path(tempfile.mkdtemp(prefix="vaelab-unprivileged-"))
    os.chmod(folder, 0o777)
    return folder
