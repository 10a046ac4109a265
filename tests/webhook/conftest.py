"""Fixtures for the webhook receiver: the real ASGI app served by uvicorn on a loopback port, beside the fake
GitHub and the platform database of the sensor tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvicorn

from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.webhook import ReceiverSettings, create_app
from tests.github_server import github_server  # noqa: F401  (fixture)
from tests.sensors.conftest import Intake, intake  # noqa: F401  (fixture)

SECRET = "whsec-test-0123456789"


class Receiver:
    def __init__(
        self, store: PlatformStore, max_body: int = 64 * 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/webhook"
        config = uvicorn.Config(create_app(store, ReceiverSettings(SECRET, max_body), clock=clock), log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        wait_for(lambda: self.server.started, what="the receiver to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def wait_for(check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def receiver(intake: Intake) -> Iterator[Receiver]:  # noqa: F811
    with Receiver(intake.store) as r:
        yield r
