"""Subscribers: lists, people, their topic choices, consent and unsubscribes.

This package stands alone: it never imports `digest`. The digest pipeline talks to it only
through `subscribers.service` and `subscribers.tokens`.
"""
