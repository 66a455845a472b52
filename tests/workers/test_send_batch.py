"""outbox.send_batch, a worker's share of a send: a batch run twice (the broker handing it out
again after its worker died) sends nobody twice, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from digest.deliver.file import FileBackend
from digest.deliver.outbox import send_batch
from digest.store import Store
from tests.deliver.test_outbox import NOW, clock, delivered, make_message, queued_issue, readers


async def test_a_batch_sent_twice_reaches_each_reader_once(store: Store, tmp_path: Path) -> None:
    issue_id = queued_issue(store, readers(5))
    rows = store.peek_queued(issue_id, 5)
    backend = FileBackend(tmp_path / "out")

    first = await send_batch(store, rows, make_message, backend, clock=clock)
    again = await send_batch(store, rows, make_message, backend, clock=clock)

    assert [r.state for r in first] == ["sent"] * 5
    assert again == []
    assert delivered(tmp_path / "out") == sorted(readers(5))


async def test_rows_a_dead_worker_claimed_are_held_not_resent(store: Store, tmp_path: Path) -> None:
    issue_id = queued_issue(store, readers(4))
    rows = store.peek_queued(issue_id, 4)
    store.claim_rows([rows[0].id, rows[1].id], now=NOW)  # the dead worker got this far

    results = await send_batch(store, rows, make_message, FileBackend(tmp_path), clock=clock)

    assert sorted(int(r.delivery_id) for r in results) == [rows[2].id, rows[3].id]
    assert delivered(tmp_path) == sorted(readers(4)[2:])
    counts = store.outbox_counts(issue_id)
    assert (counts["sending"], counts["sent"], counts["queued"]) == (2, 2, 0)
