"""The SIA DC-09 forwarder: each alarm, trouble and restore the receiver stores, sent to a
professional monitoring centre's DC-09 receiver over TCP (docs/dc09.md).

- ``config``: the ``[forward.dc09]`` table;
- ``frame``: the DC-09 frame (CRC-16/ARC, length, timestamp);
- ``cipher``: AES-CBC of a message's data and of an encrypted reply;
- ``messages``: the ``ADM-CID`` event message and the ``NULL`` link test;
- ``replies``: the receiver's ACK, NAK and DUH, read as hostile input;
- ``contact_id``: a stored event as Contact ID (qualifier, code, group, zone, account);
- ``follow``: the query that reads the ``events`` table in store order;
- ``queue``: the durable queue, fed in one transaction with its position;
- ``link``: one TCP connection to the receiver: connect, send, read one reply;
- ``sender``: the thread that delivers the queue in order, waits for each ACK, retries;
- ``forwarder``: ``Dc09Forwarder``, the follower and the sender together.
"""
