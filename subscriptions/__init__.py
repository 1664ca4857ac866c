"""Real-time delivery: the broadcast bus, typed events, and resumable streams.

Events carry ids only; every subscriber re-reads what an event points to
through its own permissions, and replays from the database after a
position, so the at-most-once bus never loses anything a client asked for.
"""
