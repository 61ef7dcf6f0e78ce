
from abc import abstractmethod

import dagster as dg

from ml_assets.alerts import Alert, append_alert


class AlertSinkResource(dg.ConfigurableResource):
    """Where alerts go. The default writes JSON lines to a file a person or agent can tail."""

    @abstractmethod
    def send(self, alert: Alert) -> None: ...


class LogFileAlertSink(AlertSinkResource):
    path: str

    def send(self, alert: Alert) -> None:
        append_alert(self.path, alert)
