"""Run the DDP entry point (`ml_assets.training.ddp`) through torchrun on this machine.

The plain half of the local launch: the command, its environment, the watchdog over its
process tree and the reading of what came back. `ml_assets.resources.training` starts the
command through Dagster Pipes (`PipesSubprocessClient`), so epochs and the result arrive as
Pipes messages from rank 0 rather than as lines parsed out of stdout. The watchdog kills
the whole tree (torchrun and every rank, each in a session of its own) when the deadline
passes, the caller is interrupted or torchrun exits leaving a rank behind, so no orphaned
worker keeps a CPU (or a GPU) busy after the step that started it is gone.

`torchrun_args` is the one place the torchrun flags are built: the local launcher, the
single-node Kubernetes step (same launcher, inside the step pod) and the multi-node pods
(`ml_assets.training.k8s`) all use it, so what the tests run here is what the pods run.
Single node: `--standalone`. Several nodes: the c10d rendezvous on node 0 (`--rdzv-endpoint`),
which, unlike the static one, lets a replaced node re-join and `--max-restarts` restart
every node's workers together.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

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



# torchrun writes each rank's stdout and stderr to files under this folder of the run directory (`--redirects`, not
# `--tee`: the step's own output, a console under `ml-assets demo`, gets rank 0's log records through Pipes instead of
# every rank's raw lines); the tail of a failed run comes from there.
LOG_DIR = "logs"


def output_tail(log_dir: Path, skip: frozenset[str] = frozenset(), lines: int = _TAIL_LINES) -> list[str]:
    """The last `lines` lines the ranks wrote (torchrun's `--redirects` files: <run>/attempt_<n>/<local rank>/std*.log),
    each prefixed with where it came from; the run folders named in `skip` (earlier launches) are left out."""
    found = []
    for file in log_dir.glob("*/attempt_*/*/std*.log") if log_dir.is_dir() else []:
        run, attempt, rank = file.parts[-4:-1]
        if run in skip:
            continue
        with contextlib.suppress(OSError):
            text = file.read_text(encoding="utf-8", errors="replace").splitlines()
            key = (int(attempt.removeprefix("attempt_")), int(rank) if rank.isdigit() else 0, file.name)
            found.append((key, [f"[{attempt} rank {rank} {file.stem}] {line}" for line in text[-lines:]]))
    return [line for _, block in sorted(found) for line in block][-lines:]


def result_from_messages(messages: Sequence[Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(result, epochs) from the entry point's Pipes custom messages (`ddp._report`): the last "result" message and
    every "epoch" message in order (a restarted worker group reports its epochs again from the checkpoint on)."""
    events = [m for m in messages if isinstance(m, dict)]
    results = [m["result"] for m in events if m.get("event") == "result" and isinstance(m.get("result"), dict)]
    return (results[-1] if results else None), [m for m in events if m.get("event") == "epoch"]


class ProcessTreeWatchdog:
    """Watches the process tree of one command started by this process (the Pipes client's torchrun): calls
    `on_overtime(elapsed_s)` once after `overtime_s` (T3), kills the whole tree after `deadline_s`, and on exit kills
    whatever of the tree is still alive, so no rank outlives the step that started it.

    Why a watchdog: `PipesSubprocessClient.run` blocks in `Popen.wait()` without a timeout, starts the child in this
    process's session and forwards only a SIGINT on interruption; torchrun starts every rank in a session of its own,
    so a rank whose agent dies before forwarding a signal would be orphaned. The tree is tracked while it runs with
    psutil (a `psutil.Process` remembers its start time, so a recycled pid is never signalled) because once torchrun
    is gone its ranks are re-parented and no longer found below it.
    """

    def __init__(self, command: Sequence[str], deadline_s: float | None = None, overtime_s: float | None = None,
                 on_overtime: Callable[[float], None] | None = None, poll_s: float = 0.2,
                 grace_s: float = _TERM_GRACE_S):
        self.command = list(command)
        self.deadline_s, self.overtime_s, self.on_overtime = deadline_s, overtime_s, on_overtime
        self.poll_s, self.grace_s = poll_s, grace_s
        self.deadline_passed = False
        self.overtime_error: BaseException | None = None
        self.root: psutil.Process | None = None
        self.tree: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="torchrun-watchdog", daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> ProcessTreeWatchdog:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._track()
        self.kill(grace_s=0.0)

    def _find_root(self) -> psutil.Process | None:
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):  # gone, or not yet exec'd into the command
                if child.cmdline() == self.command:
                    return child
        return None

    def _track(self) -> None:
        if self.root is None:
            self.root = self._find_root()
            if self.root is None:
                return
            self.tree[self.root.pid] = self.root
        with contextlib.suppress(psutil.Error):
            for proc in self.root.children(recursive=True):
                self.tree.setdefault(proc.pid, proc)

    def _watch(self) -> None:
        overtime_pending = self.overtime_s is not None and self.on_overtime is not None
        while not self._stop.wait(self.poll_s):
            self._track()
            elapsed = time.monotonic() - self.started
            if overtime_pending and elapsed >= self.overtime_s:
                overtime_pending = False
                try:
                    self.on_overtime(elapsed)
                except Exception as e:  # an unreachable alert sink must not end the watch (and leave no deadline)
                    self.overtime_error = e
            if self.deadline_s is not None and elapsed >= self.deadline_s:
                self.deadline_passed = True
                self.kill(grace_s=self.grace_s)
                return

    def alive(self) -> list[psutil.Process]:
        return [p for p in self.tree.values() if _running(p)]

    def kill(self, grace_s: float) -> None:
        """SIGTERM torchrun (it forwards the signal to the ranks and stops them) and wait up to `grace_s`; then SIGKILL
        every process of the tree that is left."""
        if self.root is not None and grace_s > 0 and _running(self.root):
            with contextlib.suppress(psutil.Error):
                self.root.terminate()
            _wait_gone([self.root], grace_s)
        left = self.alive()
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _wait_gone(left, 5.0)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(procs: Sequence[psutil.Process], timeout_s: float) -> None:
    """Wait until none of `procs` runs (a zombie counts as gone). Polls instead of `psutil.wait_procs`, which reaps
    children: torchrun is the Pipes client's child, and its `Popen.wait()` must get the exit status."""
    until = time.monotonic() + timeout_s
    while any(_running(p) for p in procs) and time.monotonic() < until:
        time.sleep(0.05)


@dataclass
class PreparedLaunch:
    """One torchrun launch, ready for a process starter (the Pipes client): what to run, with which environment, and
    where its outputs and logs land."""

    command: list[str]
    env: dict[str, str]
    out_dir: Path
    log_dir: Path
    earlier_logs: frozenset[str]

    def tail(self) -> list[str]:
        return output_tail(self.log_dir, self.earlier_logs)

    def failed(self, reason: str, returncode: int | None) -> TrainingFailed:
        return TrainingFailed(reason, returncode, self.tail())

    def result(self, messages: Sequence[Any], duration_s: float) -> TrainingResult:
        """The TrainingResult from what rank 0 reported through Pipes; a run that exited 0 without reporting a result
        is a failure (an entry point that was not launched through Pipes, or one that died after its last epoch)."""
        result, epochs = result_from_messages(messages)
        if result is None:
            raise self.failed(f"training exited 0 but reported no result through Dagster Pipes "
                              f"({len(messages)} messages received)", 0)
        return TrainingResult(out_dir=self.out_dir, result=result, epochs_log=epochs, command=self.command,
                              duration_s=duration_s, returncode=0)


class LocalTorchrunLauncher:
    """The torchrun command line and environment for this machine; `ml_assets.resources.training` starts it through
    Dagster Pipes (`PipesSubprocessClient`) under a `ProcessTreeWatchdog`."""

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
                f"--log-dir={Path(out_dir) / LOG_DIR}", "--redirects=3",
                *entry_args(data, out_dir, spec_path, checkpoint_uri)]

    def prepare(self, data: Path, out_dir: Path, spec: TrainingSpec | dict,
                checkpoint_uri: str | None = None) -> PreparedLaunch:
        """Validate `spec` (a mapping is validated into a TrainingSpec, so a bad spec is refused before anything
        starts), write it into `out_dir` and build the command."""
        data, out_dir = Path(data), Path(out_dir)
        spec_json = TrainingSpec.model_validate(spec).model_dump_json(indent=2)
        out_dir.mkdir(parents=True, exist_ok=True)
        spec_path = out_dir / "spec.json"
        atomic_write_bytes(spec_path, (spec_json + "\n").encode())
        log_dir = out_dir / LOG_DIR
        earlier = frozenset(p.name for p in log_dir.iterdir()) if log_dir.is_dir() else frozenset()
        return PreparedLaunch(self.command(data, out_dir, spec_path, checkpoint_uri),
                              _child_env(self.extra_env, self.nproc_per_node), out_dir, log_dir, earlier)
