"""The commune's station: the receiver and the duty desk on one store, in one process.

This is what ``tuquan console`` runs under its web pages. The receiver stores and receipts
events exactly as ``tuquan receive`` does; after each commit it wakes the desk, which opens the
alerts, so an alarm reaches the console without waiting for the desk's next look.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from commune.config import ReceiverConfig
from commune.desk import Desk
from commune.receiver import DB_FILENAME, Receiver
from gateway.broker import BrokerSettings, settings_tls_context


class Station:
    """``start()`` the desk, then the receiver; ``stop()`` both."""

    def __init__(self, data_dir: Path, config: ReceiverConfig, broker: BrokerSettings) -> None:
        self.data_dir = Path(data_dir)
        self.config = config
        self.desk = Desk(self.data_dir, config, broker)
        self.receiver = Receiver(
            broker.host,
            broker.port,
            config.receiver.commune,
            self.data_dir / DB_FILENAME,
            client_id=broker.client_id,
            username=broker.username,
            password=broker.password,
            tls=settings_tls_context(broker),
            on_new_event=self._stored,
            share_group=config.receiver.share_group,
            session_expiry_s=config.receiver.session_expiry_s,
            keepalive=broker.keepalive_s,
        )

    def _stored(self, event: dict[str, Any]) -> None:
        self.desk.wake()

    def start(self) -> None:
        self.desk.start()
        try:
            self.receiver.start()
        except BaseException:
            self.desk.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        self.receiver.stop(timeout)
        self.desk.stop(timeout)

    def __enter__(self) -> Station:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
