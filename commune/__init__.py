"""The commune side: the receiver that stores every hub event and receipts it (``tuquan receive``).

It shares the event model (``gateway.events``) and topic names (``gateway.topics``) with the hub,
nothing else.
"""
