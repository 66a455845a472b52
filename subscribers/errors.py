"""Subscriber errors: each is a problem the user can act on, with a one-line message.

SubscriberError
├── InvalidEmail       not an email address
├── UnknownList        no list by that name
├── InvalidToken       a link that is forged, cut short, expired, used up or for another address
└── ConsentWithdrawn   the address left; only the person can bring it back
"""

from __future__ import annotations


class SubscriberError(Exception):
    """A problem the user can act on; its message is one line."""


class InvalidEmail(SubscriberError):
    pass


class UnknownList(SubscriberError):
    pass


class InvalidToken(SubscriberError):
    """A link that is forged, cut short, expired, used up or for another address."""


class ConsentWithdrawn(SubscriberError):
    """The address unsubscribed, bounced or complained: only the person can bring it back."""
