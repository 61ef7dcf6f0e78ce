
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from ml_assets.training.launcher import LocalTorchrunLauncher, TrainingResult


class TrainingLauncherResource(dg.ConfigurableResource):
    """Runs the training entry point (`python -m ml_assets.training.ddp`) somewhere."""

    @abstractmethod
    def launch(self, data: Path, out_dir: Path, spec: dict, log: Callable[[str], None] | None = None,
               timeout_s: float | None = None) -> TrainingResult: ...

    @abstractmethod
    def describe(self) -> dict: ...


class LocalTorchrunLauncherResource(TrainingLauncherResource):
    """`torchrun --standalone --nproc_per_node=N` on this machine (gloo on CPU, NCCL on GPU)."""

    nproc_per_node: int = 2
    max_restarts: int = 0

    def launch(self, data: Path, out_dir: Path, spec: dict, log: Callable[[str], None] | None = None,
               timeout_s: float | None = None) -> TrainingResult:
        launcher = LocalTorchrunLauncher(nproc_per_node=self.nproc_per_node, max_restarts=self.max_restarts,
                                         timeout_s=timeout_s)
        return launcher.launch(data, out_dir, spec, log=log)

    def describe(self) -> dict:
        return {"launcher": "local torchrun", "nproc_per_node": self.nproc_per_node, "max_restarts": self.max_restarts}
