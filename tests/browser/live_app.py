"""The app under uvicorn in a thread, on a port bound before its links are made, for the
browser tests; and waiting for something to happen without sleeping longer than needed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

# How long to wait for the server to start or a message to arrive before calling it lost.
PATIENCE_SECONDS = 20


@contextmanager
def listening() -> Iterator[tuple[socket.socket, str]]:
    """A socket bound to a free loopback port, and the base URL it will serve."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    try:
        yield listener, f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@contextmanager
def served(app: Any, listener: socket.socket) -> Iterator[None]:
    """Serve `app` on `listener` until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "uvicorn to start")
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(PATIENCE_SECONDS)


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
