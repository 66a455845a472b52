"""The file backend: one parseable .eml per message, written atomically into a folder."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.policy import default as default_policy
from pathlib import Path

import pytest

from digest.deliver.backends import backend_from_url
from digest.deliver.file import FileBackend
from digest.errors import ConfigError
from tests.deliver.test_message import outgoing

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

DATE = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


async def test_each_message_becomes_one_parseable_eml(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox" / "new"  # created on first use
    batch = [
        outgoing(delivery_id="1", to="ann@example.com", subject="For Ann"),
        outgoing(delivery_id="2", to="bob@example.com", subject="Für Bob ✓"),
    ]

    results = await FileBackend(outbox).send(batch, date=DATE)

    assert [(r.delivery_id, r.state, r.error) for r in results] == [
        ("1", "sent", ""),
        ("2", "sent", ""),
    ]
    files = sorted(outbox.iterdir())
    assert [f.name for f in files] == ["1-ann@example.com.eml", "2-bob@example.com.eml"]
    assert [r.provider_id for r in results] == [f.name for f in files]
    for path, sent in zip(files, batch, strict=True):
        message = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        assert message["To"] == sent.to
        assert message["Subject"] == sent.subject
        assert message["Message-ID"] == sent.headers["Message-ID"]
        assert message.get_body(("plain",)).get_content() == sent.text  # type: ignore[union-attr]


async def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    batch = [outgoing(delivery_id=str(n), to=f"reader{n}@example.com") for n in range(5)]
    await FileBackend(tmp_path).send(batch, date=DATE)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".eml"] * 5


async def test_unsafe_characters_never_leave_the_folder(tmp_path: Path) -> None:
    sent = outgoing(delivery_id="7", to='"../../etc/passwd x"@example.com')
    (result,) = await FileBackend(tmp_path / "outbox").send([sent], date=DATE)
    assert result.state == "sent"
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == [result.provider_id]
    assert "/" not in result.provider_id and result.provider_id.startswith("7-")


async def test_a_message_that_cannot_be_written_fails_alone_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    # A directory where the .eml should go makes the final rename fail.
    (tmp_path / "1-ann@example.com.eml").mkdir()
    batch = [
        outgoing(delivery_id="1", to="ann@example.com"),
        outgoing(delivery_id="2", to="bob@example.com"),
    ]

    first, second = await FileBackend(tmp_path).send(batch, date=DATE)

    assert first.state == "failed" and "1-ann@example.com.eml" in first.error
    assert second.state == "sent"
    assert not list(tmp_path.glob("*.tmp"))


async def test_a_recipient_that_is_not_an_address_fails_alone(tmp_path: Path) -> None:
    batch = [
        outgoing(delivery_id="1", to="not an address"),
        outgoing(delivery_id="2", to="bob@example.com"),
    ]
    first, second = await FileBackend(tmp_path).send(batch, date=DATE)
    assert (first.state, second.state) == ("failed", "sent")
    assert "not an address" in first.error
    assert [p.name for p in tmp_path.iterdir()] == ["2-bob@example.com.eml"]


async def test_an_unusable_folder_leaves_the_batch_queued_with_a_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file, not a folder")
    results = await FileBackend(blocker / "new").send([outgoing()], date=DATE)
    assert [(r.state, str(blocker / "new") in r.error) for r in results] == [("queued", True)]


def test_file_url_names_the_folder(tmp_path: Path) -> None:
    backend = backend_from_url(f"file://{tmp_path}/outbox")
    assert isinstance(backend, FileBackend)
    assert backend.folder == tmp_path / "outbox"


def test_file_url_without_a_folder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs a folder"):
        backend_from_url("file://")
