"""Signed links on the site: a forged, cut, altered or borrowed token opens and changes nothing.

The token routes are read from the app. Each is tried by GET and POST (with a valid CSRF pair,
so the token is what is judged) with tokens an attacker can make: signed with another secret,
cut short, with the subscriber id changed, of another kind, or junk. Token-level properties
(every byte signed, expiry, clock skew) are in tests/subscribers/test_tokens.py.
"""

from __future__ import annotations

from subscribers import service
from subscribers.models import Consent
from subscribers.tokens import make_confirm_token, make_preferences_token, make_unsubscribe_token
from tests.security.site import ACTIVE, PENDING, FullSite, routes
from tests.web.public_site import csrf_token, take_mail

OTHER_SECRET = "a-secret-the-attacker-chose"
KIND_OF_ROUTE = {
    "/u/{token}": "unsubscribe",
    "/confirm/{token}": "confirm",
    "/p/{token}": "preferences",
}


def bad_tokens(site: FullSite, kind: str) -> dict[str, str]:
    valid = site.tokens()
    good = valid[kind]
    own_id = site.pat if kind == "confirm" else site.ann
    other_id = site.ann if kind == "confirm" else site.pat
    forged = {
        "unsubscribe": make_unsubscribe_token(OTHER_SECRET, site.ann, "weekly"),
        "preferences": make_preferences_token(OTHER_SECRET, site.ann, "weekly", ACTIVE),
        "confirm": make_confirm_token(OTHER_SECRET, site.pat, "weekly", PENDING, now=site.clock()),
    }
    assert good.startswith(f"{own_id}.")
    return {
        "signed with another secret": forged[kind],
        "last character cut": good[:-1],
        "cut in half": good[: len(good) // 2],
        "signature dropped": good.rsplit(".", 1)[0],
        "another subscriber's id": f"{other_id}{good.removeprefix(str(own_id))}",
        "another list": good.replace(".weekly.", ".alerts.", 1),
        **{f"a {other} token": valid[other] for other in valid if other != kind},
        "junk": "x" * 2000,
        "dots": "...",
    }


def test_a_bad_token_is_a_calm_400_and_changes_nothing(full_site: FullSite) -> None:
    """Attack: open or POST a link with a token forged with another secret, cut short, naming
    another subscriber or list, of another kind (a preferences token as an unsubscribe link,
    say) or junk. Each answers a 400 page with one sentence, no traceback, and nothing is
    stored, unsubscribed, confirmed or mailed. Every route taking a token is tried: a link
    route added later must be added here."""
    client = full_site.client
    taking = {p for m in ("GET", "POST") for p in routes(full_site.app, m) if "{token}" in p}
    assert taking == set(KIND_OF_ROUTE)
    token_field = csrf_token(client.get("/subscribe/weekly").text)
    before = full_site.snapshot()
    for route, kind in KIND_OF_ROUTE.items():
        for name, token in bad_tokens(full_site, kind).items():
            url = route.replace("{token}", token)
            for method in ("GET", "POST"):
                answer = client.request(
                    method, url, data={"csrf_token": token_field} if method == "POST" else None
                )
                where = f"{method} {route} with {name}"
                assert answer.status_code == 400, (where, answer.status_code)
                assert "not valid" in answer.text, where
                assert "Traceback" not in answer.text and "Error:" not in answer.text, where
    assert full_site.snapshot() == before
    assert take_mail(full_site.outbox) == []


def test_the_genuine_tokens_do_work(full_site: FullSite) -> None:
    """The control for the test above: the same routes with the valid tokens act."""
    client = full_site.client
    tokens = full_site.tokens()
    token_field = csrf_token(client.get("/subscribe/weekly").text)
    assert client.get(f"/p/{tokens['preferences']}").status_code == 200
    confirmed = client.post(f"/confirm/{tokens['confirm']}", data={"csrf_token": token_field})
    assert confirmed.status_code == 200
    assert client.post(f"/u/{tokens['unsubscribe']}").status_code == 200
    with full_site.store.engine.connect() as connection:
        ann = service.find_subscription(connection, full_site.ann, "weekly")
        pat = service.find_subscription(connection, full_site.pat, "weekly")
    assert ann is not None and pat is not None
    assert (ann.status, pat.status) == ("unsubscribed", "active")


def test_a_confirm_link_from_before_an_erasure_confirms_nobody(full_site: FullSite) -> None:
    """Attack: keep the confirmation link of an address that was later erased, wait until the
    address subscribes again (a new person, a new pending request), then use the old link to
    confirm the new request without its owner's consent. The old link names the erased id."""
    old_link = f"/confirm/{full_site.tokens()['confirm']}"
    with full_site.store.transaction() as connection:
        service.forget_person(connection, PENDING, now=full_site.clock())
        service.subscribe(
            connection,
            PENDING,
            list_name="weekly",
            consent=Consent(source="form:/subscribe/weekly"),
            now=full_site.clock(),
        )
        again = service.find_person(connection, PENDING)
    assert again is not None and again.id != full_site.pat
    token_field = csrf_token(full_site.client.get("/subscribe/weekly").text)

    answer = full_site.client.post(old_link, data={"csrf_token": token_field})

    assert answer.status_code == 400
    assert "not valid any more" in answer.text
    with full_site.store.engine.connect() as connection:
        found = service.find_subscription(connection, again.id, "weekly")
    assert found is not None and found.status == "pending"
