"""A stored event as Contact ID, and the zone numbers of the zones it names.

| event            | Contact ID                                                       |
|------------------|------------------------------------------------------------------|
| qualifier ``E``  | 1 (new event)                                                    |
| qualifier ``R``  | 3 (restore)                                                      |
| ``cid``          | the event code as it is (120 panic, 110 fire, 137 tamper...)     |
| (always)         | group 01                                                         |
| ``zone``         | ``[forward.dc09.zones]``, else 000 for ``hub`` and for the       |
|                  | receiver's own troubles about the hub (the premises), else a     |
|                  | number of the hub's own: 001, 002... in order of first           |
|                  | appearance, kept in ``dc09_zones`` so it never changes           |

A zone number given in the config is never handed out automatically, so an automatic number
does not collide with one the centre was told of. When 999 numbers are taken, 999 is shared.
"""

from __future__ import annotations

from collections.abc import Mapping

from commune.db import Connection
from commune.dc09.messages import ContactId
from core.events import NEW, RESTORE

QUALIFIERS = {NEW: 1, RESTORE: 3}
GROUP = 1
PREMISES_ZONE = "hub"
RECEIVER_SOURCE = "receiver"  # commune.hub_troubles: a hub offline, silent, its alarms stuck
LAST_ZONE = 999


class Unmappable(ValueError):
    """An event that cannot be said in Contact ID (a damaged row); the message says why."""


def contact_id(qualifier: object, cid: object, zone: int) -> ContactId:
    if qualifier not in QUALIFIERS:
        raise Unmappable(f"qualifier {qualifier!r} is neither {NEW!r} nor {RESTORE!r}")
    if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid <= 999:
        raise Unmappable(f"event code {cid!r} is not a number from 0 to 999")
    return ContactId(QUALIFIERS[str(qualifier)], cid, GROUP, zone)


def zone_number(
    conn: Connection,
    hub: str,
    zone: str,
    configured: Mapping[str, int],
    source: str = "",
) -> int:
    """The zone's number (see the module); an automatic one is assigned inside ``conn``'s
    transaction."""
    if zone in configured:
        return configured[zone]
    if zone == PREMISES_ZONE or source == RECEIVER_SOURCE:
        return 0
    row = conn.execute(
        "SELECT number FROM dc09_zones WHERE hub = ? AND zone = ?", (hub, zone)
    ).fetchone()
    if row is not None:
        return int(row[0])
    taken = {int(r[0]) for r in conn.execute("SELECT number FROM dc09_zones WHERE hub = ?", (hub,))}
    taken |= set(configured.values())
    number = next((n for n in range(1, LAST_ZONE + 1) if n not in taken), LAST_ZONE)
    conn.execute(
        "INSERT INTO dc09_zones (hub, zone, number) VALUES (?, ?, ?) "
        "ON CONFLICT (hub, zone) DO NOTHING",
        (hub, zone, number),
    )
    return number
