"""What this machine gives vaelab: the cores it may run on and its memory.

The size checks of every command (``launch --num-processes``, ``tutorial check --jobs``
and ``--memory``, a model's memory estimate) compare against these two numbers.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or ``taskset``
    narrows), or all of the machine's where there is no affinity (not Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def memory_bytes() -> int:
    """The machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
