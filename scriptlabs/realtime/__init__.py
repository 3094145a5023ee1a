"""Realtime: the LISTEN connection behind labEvents, and the fan-out to subscribers."""
