"""Finding live processes by their command line, to prove that no rank outlives a killed or finished launch
and to kill a whole training from outside."""

from __future__ import annotations

import psutil


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line (arguments joined by NUL, as the kernel keeps them) contains
    `text`."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if text in "\0".join(cmdline):
            found.append(proc.pid)
    return found
