"""Tests for subscribers/csvrows.py: the import's short cut must agree with the service."""

from __future__ import annotations

import random

import pytest

from subscribers import service
from subscribers.csvrows import normalise_address

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

TRICKY = [
    "Ann@Example.ORG",
    "a.b+c_d-e@mail.example.co.uk",
    "a@localhost",
    "a@x.local",
    "a@x.test",
    "a@home.arpa",
    "a@x.onion",
    "a@example.123",
    "a@1.2.3.4",
    "a@xn--bcher-kva.example",
    "a@x.xn--p1ai",
    "a@-x.org",
    "a@x-.org",
    "a@x..org",
    "a@x_y.org",
    "a@x.org.",
    ".a@x.org",
    "a.@x.org",
    "a..b@x.org",
    "a@b.c",
    "a" * 64 + "@x.org",
    "a" * 65 + "@x.org",
    "a@" + "b" * 63 + ".org",
    "a@" + "b" * 64 + ".org",
    "a" * 64 + "@" + ".".join(["b" * 60, "c" * 60, "d" * 60]) + ".org",
    "a" * 64 + "@" + ".".join(["b" * 61, "c" * 61, "d" * 60]) + ".org",
]


def outcome(function: object, address: str) -> str:
    try:
        return function(address)  # type: ignore[operator]
    except service.InvalidEmail as error:
        return f"InvalidEmail: {error}"


@pytest.mark.parametrize("address", TRICKY)
def test_normalise_address_agrees_with_the_service(address: str) -> None:
    assert outcome(normalise_address, address) == outcome(service.normalise_email, address)


def test_normalise_address_agrees_with_the_service_on_random_addresses() -> None:
    rng = random.Random(6)
    # Mostly characters of plain addresses, so many take the short cut, and a few that do not.
    local_chars = "abcXYZ019._+-" * 4 + "'!"
    domain_chars = "abcXY09-" * 4 + "._"
    tlds = ["org", "COM", "local", "test", "123", "xn--p1ai", "o", "internal", ""]
    disagreements = []
    for _ in range(3000):
        local = "".join(rng.choice(local_chars) for _ in range(rng.choice([1, 3, 8, 63, 64, 65])))
        host = "".join(rng.choice(domain_chars) for _ in range(rng.choice([1, 4, 20, 70])))
        address = f"{local}@{host}.{rng.choice(tlds)}"
        if outcome(normalise_address, address) != outcome(service.normalise_email, address):
            disagreements.append(address)
    assert disagreements == []
