"""A dispatcher wired to a real uplink, as the hub wires them, without the rest of the hub.

The uplink reports connections, PUBACKs, receipts and the receiver's "online" to the
dispatcher; commands are ignored. ``client_id`` defaults to one made of the hub's topics.
"""

from __future__ import annotations

from typing import Any

from core.topics import HubTopics
from gateway.broker import BrokerSettings
from gateway.dispatcher import Dispatcher
from gateway.receipts import ReceiptGate
from gateway.uplink import Uplink, UplinkHandlers
from testkit.mqtt import HasAddress


def _ignore_command(name: str, payload: bytes, retained: bool, expiry_s: int | None) -> None:
    pass


def uplink_for(
    dispatcher: Dispatcher,
    broker: HasAddress,
    topics: HubTopics,
    *,
    client_id: str | None = None,
    **options: Any,
) -> Uplink:
    """An uplink (not started) reporting to ``dispatcher``, attached to it as its publisher.

    ``options`` go to ``Uplink`` (``max_inflight``, ``liveness``)."""
    uplink = Uplink(
        BrokerSettings(
            broker.host, broker.port, client_id=client_id or f"tuquan-{topics.commune}-{topics.hub}"
        ),
        topics,
        UplinkHandlers(
            connected=dispatcher.on_connected,
            disconnected=dispatcher.on_disconnected,
            published=dispatcher.on_published,
            receipt=ReceiptGate(topics.hub, None, dispatcher.on_receipt),  # not enrolled
            command=_ignore_command,
            receiver_online=dispatcher.on_receiver_online,
        ),
        **options,
    )
    dispatcher.attach(uplink)
    return uplink
