"""The commune's station: the receiver and the duty desk on one store, in one process.

This is what ``tuquan console`` runs under its web pages. The receiver stores and receipts
events exactly as ``tuquan receive`` does; after each commit it wakes the desk, which opens the
alerts, so an alarm reaches the console without waiting for the desk's next look. With a
``[forward.dc09]`` table, the DC-09 forwarder (``commune.dc09``) is woken too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from commune.config import ReceiverConfig
from commune.dc09.forwarder import Dc09Forwarder
from commune.desk import Desk
from commune.locations import store_location
from commune.receiver import Receiver
from gateway.broker import BrokerSettings, settings_tls_context


class Station:
    """``start()`` the desk, then the receiver; ``stop()`` both."""

    def __init__(
        self,
        data_dir: Path,
        config: ReceiverConfig,
        broker: BrokerSettings,
        *,
        store: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.config = config
        self.store = store_location(config.receiver.store, self.data_dir, store)
        self.desk = Desk(self.data_dir, config, broker, store=store)
        dc09 = config.forward.dc09
        self.forwarder = Dc09Forwarder(self.store, dc09) if dc09 is not None else None
        self.receiver = Receiver(
            broker.host,
            broker.port,
            config.receiver.scope,
            self.store,
            data_dir=self.data_dir,
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
        if self.forwarder is not None:
            self.forwarder.wake()

    def start(self) -> None:
        self.desk.start()
        try:
            if self.forwarder is not None:
                self.forwarder.start()
            self.receiver.start()
        except BaseException:
            if self.forwarder is not None:
                self.forwarder.stop()
            self.desk.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        self.receiver.stop(timeout)
        if self.forwarder is not None:
            self.forwarder.stop(timeout)
        self.desk.stop(timeout)

    def __enter__(self) -> Station:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
