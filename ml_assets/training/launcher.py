"""Run the DDP entry point (`ml_assets.training.ddp`) through torchrun on this machine.

The launcher owns the child process tree: torchrun runs in its own process group, which
is killed as a whole when the deadline passes or the caller is interrupted, so no
orphaned workers keep a CPU (or a GPU) busy after the step that started them is gone.

`torchrun_args` is the one place the torchrun flags are built: the local launcher, the
single-node Kubernetes step (same launcher, inside the step pod) and the multi-node pods
(`ml_assets.training.k8s`) all use it, so what the tests run here is what the pods run.
Single node: `--standalone`. Several nodes: the c10d rendezvous on node 0 (`--rdzv-endpoint`),
which, unlike the static one, lets a replaced node re-join and `--max-restarts` restart
every node's workers together.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_assets
from ml_assets.contract.model import TrainingSpec
from ml_assets.storage import atomic_write_bytes

_TAIL_LINES = 50
_TERM_GRACE_S = 10.0


@dataclass
class TrainingResult:
    out_dir: Path
    result: dict
    epochs_log: list[dict]
    command: list[str]
    duration_s: float
    returncode: int


class TrainingFailed(RuntimeError):
    def __init__(self, reason: str, returncode: int | None, output_tail: list[str]):
        self.reason = reason
        self.returncode = returncode
        self.output_tail = list(output_tail)
        tail = "\n".join(self.output_tail) or "(no output)"
        super().__init__(f"{reason} (exit code {returncode}); last {len(self.output_tail)} lines of output:\n{tail}")


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a container's limit,
    which the affinity mask of a Kubernetes pod does not show)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(float(quota) / float(period))))
    return max(1, cpus)


def threads_per_rank(nproc_per_node: int) -> int:
    """Intra-op threads for each of the node's ranks: the CPUs divided among them, at least one.

    torch would start one thread per core in every rank, so N ranks on N cores would run N*N
    threads and spend their time switching; one rank alone gets every core."""
    return max(1, available_cpus() // max(1, nproc_per_node))


def _child_env(extra_env: dict[str, str] | None, nproc_per_node: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads_per_rank(nproc_per_node)))
    env["PYTHONUNBUFFERED"] = "1"
    # With the rendezvous TCPStore shared between agent and workers (torch's default), restarted workers can read
    # the previous round's addresses from the store and fail to connect or hang in init_process_group
    # (pytorch/pytorch#135712; about 2 restarts in 5 failed here on torch 2.13). Opting out gives each round its own.
    env.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    # The workers must import the same ml_assets as this process, also when it is a source checkout found via cwd.
    package_root = str(Path(ml_assets.__file__).resolve().parent.parent)
    if not {"site-packages", "dist-packages"} & set(Path(package_root).parts):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    env.update({k: str(v) for k, v in (extra_env or {}).items()})
    return env


def _cmdline(pid: int) -> bytes | None:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None


def _descendants(pid: int) -> dict[int, bytes | None]:
    """Every live descendant of `pid` with its command line (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            # The command name in field 2 may hold spaces; the parent pid follows the closing parenthesis.
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return {p: _cmdline(p) for p in found}


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (torchrun forwards it to the ranks), then SIGKILL whatever is left.

    torchrun starts each rank in a session of its own, so the ranks are collected first and
    killed by pid too: a torchrun that dies before forwarding the signal must not orphan them."""
    ranks = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):  # then it is killed below
        proc.wait(timeout=_TERM_GRACE_S)
    # Also after torchrun itself exited: a worker it failed to reap would otherwise live on.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid, cmdline in ranks.items():
        if cmdline is None or _cmdline(pid) != cmdline:
            continue  # gone, or the pid now belongs to another process
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    proc.wait()


ENTRY_MODULE = "ml_assets.training.ddp"


def torchrun_args(
    nproc_per_node: int,
    max_restarts: int = 0,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    rdzv_id: str | None = None,
) -> list[str]:
    """torchrun's flags (without the program): standalone on one node, c10d rendezvous on node 0 for several."""
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be >= 1, got {nproc_per_node}")
    if max_restarts < 0:
        raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
    if nnodes < 1:
        raise ValueError(f"nnodes must be >= 1, got {nnodes}")
    common = [f"--nproc-per-node={nproc_per_node}", f"--max-restarts={max_restarts}"]
    if nnodes == 1:
        return ["--standalone", *common]
    if not rdzv_endpoint or not rdzv_id:
        raise ValueError(f"{nnodes} nodes need a rendezvous endpoint (host:port of node 0) and a run id; "
                         f"got endpoint={rdzv_endpoint!r}, id={rdzv_id!r}")
    return [f"--nnodes={nnodes}", *common, "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}",
            f"--rdzv-id={rdzv_id}"]


def entry_args(data: str | Path, out_dir: str | Path, spec: str | Path, checkpoint_uri: str | None = None) -> list[str]:
    """The entry point's own arguments, after torchrun's."""
    args = ["-m", ENTRY_MODULE, "--data", str(data), "--out", str(out_dir), "--spec", str(spec)]
    return args + (["--checkpoint-uri", checkpoint_uri] if checkpoint_uri else [])


class LocalTorchrunLauncher:
    def __init__(
        self,
        nproc_per_node: int = 2,
        max_restarts: int = 0,
        timeout_s: float | None = None,
        extra_env: dict | None = None,
        nnodes: int = 1,
        rdzv_endpoint: str | None = None,
        rdzv_id: str | None = None,
    ):
        # Validates the numbers before anything starts.
        self.torchrun_args = torchrun_args(nproc_per_node, max_restarts, nnodes, rdzv_endpoint, rdzv_id)
        self.nproc_per_node = nproc_per_node
        self.max_restarts = max_restarts
        self.nnodes = nnodes
        self.timeout_s = timeout_s
        self.extra_env = dict(extra_env or {})

    def command(self, data: Path, out_dir: Path, spec_path: Path, checkpoint_uri: str | None = None) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", *self.torchrun_args,
                *entry_args(data, out_dir, spec_path, checkpoint_uri)]

    def launch(
        self,
        data: Path,
        out_dir: Path,
        spec: TrainingSpec,
        log: Callable[[str], None] | None = None,
        checkpoint_uri: str | None = None,
        overtime_s: float | None = None,
        on_overtime: Callable[[float], None] | None = None,
    ) -> TrainingResult:
        """Run to completion. `on_overtime(elapsed_s)` is called once, while training still runs, when
        `overtime_s` has passed (T3); past `timeout_s` the whole process tree is killed. `spec` is a TrainingSpec (a
        mapping is validated into one first, so a bad spec is refused before anything starts)."""
        data, out_dir = Path(data), Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        spec_path = out_dir / "spec.json"
        spec_json = TrainingSpec.model_validate(spec).model_dump_json(indent=2)
        atomic_write_bytes(spec_path, (spec_json + "\n").encode())
        cmd = self.command(data, out_dir, spec_path, checkpoint_uri)
        tail: deque[str] = deque(maxlen=_TAIL_LINES)
        epochs_log: list[dict[str, Any]] = []
        started = time.monotonic()
        deadline = started + self.timeout_s if self.timeout_s is not None else None

        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",  # one undecodable byte from a worker must not stop the log pump
            bufsize=1,
            env=_child_env(self.extra_env, self.nproc_per_node),
            start_new_session=True,
        )
        # A reader thread lets the deadline be enforced while the child is silent; lines are handed to the
        # caller's `log` on this thread because loggers (Dagster's among them) expect the calling thread.
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(proc, lines), daemon=True)
        reader.start()
        overtime_at = started + overtime_s if overtime_s is not None and on_overtime is not None else None
        try:
            while True:
                if overtime_at is not None and time.monotonic() >= overtime_at:
                    overtime_at = None
                    on_overtime(time.monotonic() - started)
                timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
                try:
                    line = lines.get(timeout=timeout)
                except queue.Empty:
                    if deadline is not None and time.monotonic() >= deadline:
                        _kill_group(proc)
                        raise TrainingFailed(
                            f"training exceeded the deadline of {self.timeout_s:.0f} s and was killed",
                            proc.poll(),
                            list(tail),
                        ) from None
                    continue
                if line is None:
                    break
                tail.append(line)
                if log is not None:
                    log(line)
                event = _parse_event(line)
                if event is not None and event.get("event") == "epoch":
                    epochs_log.append(event)
            returncode = proc.wait()
        finally:
            if proc.poll() is None:
                # Interrupted (deadline, KeyboardInterrupt, a failing `log`): never leave the ranks running.
                _kill_group(proc)
            reader.join(timeout=5)
        duration_s = time.monotonic() - started
        if returncode != 0:
            raise TrainingFailed(f"training command failed: {' '.join(cmd)}", returncode, list(tail))
        result_path = out_dir / "result.json"
        if not result_path.exists():
            raise TrainingFailed(f"training exited 0 but wrote no {result_path}", returncode, list(tail))
        return TrainingResult(
            out_dir=out_dir,
            result=json.loads(result_path.read_text()),
            epochs_log=epochs_log,
            command=cmd,
            duration_s=duration_s,
            returncode=returncode,
        )


def _pump(proc: subprocess.Popen, lines: queue.Queue) -> None:
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
    finally:
        lines.put(None)


def _parse_event(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None
