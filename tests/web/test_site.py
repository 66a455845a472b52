"""Tests for digest/web/site.py: which lists, topics and cadences the pages offer."""

from __future__ import annotations

from digest.config import DigestConfig, TopicConfig
from digest.web.site import ListInfo, offered_lists, stored_topics


def digest(name: str, **fields: object) -> DigestConfig:
    return DigestConfig.model_validate({"name": name, "title": name.title(), **fields})


def test_lists_come_from_the_digests_in_file_order_merging_shared_lists() -> None:
    digests = [
        digest("weekly", cadence="weekly", topics=[TopicConfig(name="Science")]),
        digest("alerts"),
        digest(
            "daily",
            list="weekly",
            cadence="daily",
            topics=[TopicConfig(name="Sport"), TopicConfig(name="Science")],
        ),
    ]

    assert offered_lists(digests) == {
        "weekly": ListInfo("Weekly", ("Science", "Sport"), ("each", "daily", "weekly")),
        "alerts": ListInfo("Alerts", (), ("each",)),
    }


def test_every_topic_ticked_is_stored_as_all_topics() -> None:
    offered = ("Science", "Sport")

    assert stored_topics(("Science", "Sport"), offered) == ()
    assert stored_topics(("Sport",), offered) == ("Sport",)
    assert stored_topics((), ()) == ()
