"""Escalation and notifications: the ladder an unacknowledged alert climbs, and the durable queue
that tells the people on it (docs/notifications.md).

- ``escalation``: ``Escalator.tick()`` enqueues each step of the ladder once it is due, and the
  "acknowledged by ..." follow-ups once someone acts;
- ``queue``: ``NotificationQueue``, the ``notifications`` table: a notification stays there,
  pending, until its endpoint took it; every attempt is audited;
- ``sender``: ``NotificationSender``, the thread that delivers what is due, in order per target;
- ``webhook`` and ``zalo``: the two kinds of endpoint.
"""
