"""The training entry point with a crash drill, for the crash/resume tests (production code has no drill).

Run in place of `ml_assets.training.ddp` (the tests point the launcher's ENTRY_MODULE here): every rank
SIGKILLs itself once the checkpoint of epoch $CRASH_AFTER_EPOCH is on local disk and all ranks have passed
the barrier that follows its write, as if the node died between two epochs. Nothing gets to clean up. A
run that finds that checkpoint already on disk when it starts (the resume, or torchrun's restarted
workers) trains undisturbed.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from ml_assets.training import ddp

CRASH_AFTER_EPOCH_ENV = "CRASH_AFTER_EPOCH"
MARKER = "crash drill"  # in the log line each rank writes before it dies


def arm(epoch: int, out_dir: Path) -> None:
    """Make every barrier after the epoch's checkpoint exists the rank's last."""
    checkpoint = ddp.checkpoint_path(out_dir, epoch)
    if checkpoint.exists():
        return
    barrier = ddp._barrier

    def barrier_then_crash(env: ddp.DistEnv) -> None:
        barrier(env)
        # Rank 0 writes the checkpoint (atomically) before it enters this barrier, so once any rank is past
        # it, the file is there for every rank on this machine.
        if checkpoint.exists():
            logging.getLogger(__name__).error("%s: rank %d killing itself after checkpointing epoch %d",
                                              MARKER, env.rank, epoch)
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    ddp._barrier = barrier_then_crash  # ddp looks the name up at each call


if __name__ == "__main__":
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--out", required=True)
    arm(int(os.environ[CRASH_AFTER_EPOCH_ENV]), Path(parser.parse_known_args()[0].out))
    sys.exit(ddp.main())
