"""Finding live processes by their command line, to prove that no rank outlives a killed or finished launch
and to kill a whole training from outside (Linux /proc; empty elsewhere)."""

from __future__ import annotations

from pathlib import Path


def _cmdline(pid: int) -> bytes | None:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text`."""
    needle = text.encode()
    pids = (int(e.name) for e in (Path("/proc").iterdir() if Path("/proc").is_dir() else []) if e.name.isdigit())
    return [pid for pid in pids if needle in (_cmdline(pid) or b"")]
