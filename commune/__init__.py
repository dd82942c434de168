"""The commune side: the receiver that stores every hub event and receipts it (``tuquan receive``).

It shares the event model (``core.events``) and topic names (``core.topics``) with the hub,
nothing else.
"""
