"""Delivery: outgoing messages, the outbox that makes sending exactly-once, and mail backends."""
