"""What a person sees on the console when the CLI runs the graph, and where the full log goes.

Runs started by `ml-assets` (demo, replay) log every Dagster event and message to a file under
`$ML_ASSETS_HOME/logs/`, and print only progress a person can follow: one line per finished step
(or nothing but failures, for the replay, which prints one line per day), with the failing check's
own message. Runs launched from the UI or the daemon keep Dagster's console logger.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import dagster as dg

STEP_EVENTS = ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED")


@dg.logger(config_schema={"path": dg.Field(str, description="file that receives every event and message")},
           description="Every Dagster event and message of the run, appended to a file.")
def file_logger(init_context) -> logging.Logger:
    path = Path(init_context.logger_config["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.Logger(f"ml_assets.run_log.{init_context.run_id}", level=logging.DEBUG)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger


class _Progress(logging.Handler):
    def __init__(self, steps: bool):
        super().__init__(level=logging.DEBUG)
        self.steps = steps

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is not None and event.event_type_value in STEP_EVENTS:
            if event.event_type_value == "STEP_FAILURE":
                error = event.event_specific_data.error if event.event_specific_data else None
                while error is not None and error.cause is not None:
                    error = error.cause
                text = (error.message.strip().splitlines() or [""])[0] if error else ""
                print(f"  x {event.step_key} failed: {text}"[:400], flush=True)
            elif self.steps:
                mark = "-" if event.event_type_value == "STEP_SKIPPED" else "ok"
                duration = getattr(event.event_specific_data, "duration_ms", None)
                took = f" ({duration / 1000:.1f}s)" if duration else ""
                print(f"  {mark} {event.step_key}{took}", flush=True)
        elif event is None and record.levelno >= logging.ERROR:
            print(f"  ! {meta.get('orig_message', record.getMessage())}"[:400], flush=True)


@dg.logger(config_schema={"steps": dg.Field(bool, default_value=True, description="a line per finished step")},
           description="Progress a person can follow: finished steps and failures, nothing else.")
def progress_logger(init_context) -> logging.Logger:
    logger = logging.Logger(f"ml_assets.progress.{init_context.run_id}", level=logging.DEBUG)
    logger.addHandler(_Progress(init_context.logger_config["steps"]))
    return logger


LOGGERS = {"console": dg.colored_console_logger, "file": file_logger, "progress": progress_logger}


def run_config(log_path: Path, steps: bool = True) -> dict:
    """Run config for CLI-started runs: the full log to `log_path`, progress on the console."""
    return {"loggers": {"file": {"config": {"path": str(log_path)}}, "progress": {"config": {"steps": steps}}}}


class _LogFileStream:
    """A text stream whose lines go to a log handler's file (for libraries that print instead of logging)."""

    def __init__(self, handler: logging.FileHandler):
        self.handler = handler

    def write(self, text: str) -> int:
        if text.strip():
            self.handler.emit(logging.LogRecord("mlflow", logging.INFO, "", 0, text.rstrip("\n"), None, None))
        return len(text)

    def flush(self) -> None:
        self.handler.flush()


def quiet_libraries(log_path: Path) -> None:
    """Send library warnings and progress bars to the log file instead of the console."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logging.captureWarnings(True)
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    # MLflow configures its own logger (a stderr handler) when first imported: import it first, so the
    # handlers replaced below are the ones it will keep.
    import mlflow  # noqa: F401
    from mlflow.utils import logging_utils

    # MLflow's plain messages ("Successfully registered model ...") are printed, not logged, to this stream.
    logging_utils.MLFLOW_LOGGING_STREAM = _LogFileStream(handler)

    for name in ("py.warnings", "mlflow", "alembic", "feast", "ml_assets", "evidently"):
        lib = logging.getLogger(name)
        # MLflow (and others) attach their own stderr handler; theirs go to the file with everything else.
        for existing in list(lib.handlers):
            if isinstance(existing, logging.StreamHandler) and not isinstance(existing, logging.FileHandler):
                lib.removeHandler(existing)
        lib.addHandler(handler)
        lib.propagate = False
    warnings.simplefilter("default")
    # Dagster's notes that a parameter the project chose is beta or preview are about our code, not about the run:
    # known, and not for the console (Dagster may re-emit them where the logging capture does not reach).
    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)
    sys.stderr.flush()
