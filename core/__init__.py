"""The vocabulary the hub and the receiver share: errors, events and their kinds, ids, topics,
the clock, and the JSON reader for untrusted input. It imports no other package of tuquan."""
