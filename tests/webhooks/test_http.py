"""The webhook's HTTP client against a local endpoint: one kept-alive connection, a connection the server
ended replaced at once, https with the certificate checked, and every failure a WebhookError in time."""

from __future__ import annotations

import ssl
import time

import pytest

from spoolerd.errors import WebhookError
from spoolerd.webhooks.http import HttpPoster
from tests.peers.ports import free_port
from tests.smtp.conftest import Certs

from .conftest import Receiver, receiving

HEADERS = [("X-Spoolerd-Timestamp", "1")]


async def test_posts_share_one_connection_and_survive_its_end(receiver: Receiver) -> None:
    poster = HttpPoster(f"http://127.0.0.1:{receiver.port}/hook", timeout=5)
    try:
        assert [await poster.post(b'{"n":%d}' % n, HEADERS) for n in range(3)] == [200, 200, 200]
        assert receiver.connections == 1
        receiver.statuses = [500]
        assert await poster.post(b"{}", HEADERS) == 500  # an answer, not an error: the sender decides
        receiver.close_after_answer = True
        assert await poster.post(b"{}", HEADERS) == 200
        for _ in range(2):  # each ended connection is replaced, not failed
            assert await poster.post(b"{}", HEADERS) == 200
        assert receiver.connections == 3
        post = receiver.posts[0]
        assert post.body == b'{"n":0}' and post.headers["content-length"] == "7"
        assert (
            post.headers["host"] == f"127.0.0.1:{receiver.port}"
            and post.headers["x-spoolerd-timestamp"] == "1"
        )
    finally:
        await poster.close()


async def test_no_answer_in_time_and_no_listener_are_webhook_errors(receiver: Receiver) -> None:
    receiver.hold = True
    poster = HttpPoster(f"http://127.0.0.1:{receiver.port}/hook", timeout=0.3)
    began = time.monotonic()
    with pytest.raises(WebhookError, match=r"no answer within 0\.3 s"):
        await poster.post(b"{}", HEADERS)
    assert time.monotonic() - began < 2
    with pytest.raises(WebhookError, match="cannot connect"):
        await HttpPoster(f"http://127.0.0.1:{free_port()}/hook", timeout=5).post(b"{}", HEADERS)


async def test_https_checks_the_certificate(certs: Certs) -> None:
    async with receiving(certs.server) as r:
        url = f"https://localhost:{r.port}/hook"
        with pytest.raises(WebhookError, match="CERTIFICATE_VERIFY_FAILED"):
            await HttpPoster(url, timeout=5).post(b"{}", HEADERS)  # the system's CAs do not know it
        trusting = HttpPoster(
            url, timeout=5, ssl_context=ssl.create_default_context(cafile=str(certs.ca_file))
        )
        try:
            assert await trusting.post(b"{}", HEADERS) == 200
        finally:
            await trusting.close()
