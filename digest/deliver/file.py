"""The file backend: one .eml per message in an outbox folder, for development and previews."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from digest.deliver.message import to_email_message
from digest.errors import DeliveryError
from digest.models import OutgoingMessage, SendResult

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


class FileBackend:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, batch: Sequence[OutgoingMessage], *, date: datetime) -> list[SendResult]:
        return await asyncio.to_thread(self._write_all, batch, date)

    def _write_all(self, batch: Sequence[OutgoingMessage], date: datetime) -> list[SendResult]:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            # Nothing was written: the whole batch can be tried again once the folder is fixed.
            reason = f"{self.folder}: {error.strerror or error}"
            return [SendResult(m.delivery_id, "queued", error=reason) for m in batch]
        results = []
        for message in batch:
            path = self.folder / f"{message.delivery_id}-{_UNSAFE.sub('_', message.to)}.eml"
            try:
                _write_atomically(path, to_email_message(message, date=date).as_bytes())
            except DeliveryError as error:
                results.append(SendResult(message.delivery_id, "failed", error=str(error)))
            except OSError as error:
                # A full disk (or quota) frees up again: the message waits, it has not failed.
                state = "queued" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "failed"
                results.append(
                    SendResult(message.delivery_id, state, error=f"{path}: {error.strerror}")
                )
            else:
                results.append(SendResult(message.delivery_id, "sent", provider_id=path.name))
        return results


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader (or a crash) never sees half a message: write beside it, then rename.
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
