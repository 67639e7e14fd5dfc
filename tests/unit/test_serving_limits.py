"""The request-body limit in front of the scoring server: a body over it is refused with 413
before anything parses it, whether its size is announced or only counted as it arrives."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from mmops.serving import limits
from tests.conftest import REPO

PROTOCOL = "mmops.serving.limits:BodyLimitedHTTP"  # what UVICORN_HTTP names
CALLS: list[int] = []  # the body size of each request `echo` saw


async def echo(scope, receive, send):
    """An app that answers with the size of the body it received."""
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    CALLS.append(len(body))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


@contextmanager
def _server(monkeypatch, max_bytes: int) -> Iterator[int]:
    """uvicorn on a free port with the limited protocol picked by its import string; yields the port."""
    monkeypatch.setattr(limits.BodyLimitedHTTP, "max_bytes", max_bytes)
    CALLS.clear()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(echo, http=PROTOCOL, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


def _post(port: int, body, **kwargs) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"}, **kwargs)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_body_over_the_limit_is_refused_with_413_before_the_app_sees_it(monkeypatch):
    with _server(monkeypatch, max_bytes=1000) as port:
        status, content = _post(port, b"x" * 2000)
    assert status == 413 and CALLS == []
    error = json.loads(content)
    assert error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "the request body is 2000 bytes; at most 1000 bytes" in error["message"]
    assert limits.MAX_BODY_VARIABLE in error["message"]


def test_a_chunked_body_is_counted_as_it_arrives_and_refused_past_the_limit(monkeypatch):
    with _server(monkeypatch, max_bytes=1000) as port:
        status, content = _post(port, iter([b"x" * 600, b"x" * 600]), encode_chunked=True)
    assert status == 413 and CALLS == []
    assert "over 1000 bytes" in json.loads(content)["message"]


def test_a_body_within_the_limit_reaches_the_app_whole(monkeypatch):
    with _server(monkeypatch, max_bytes=1000) as port:
        assert _post(port, b"x" * 1000) == (200, b"1000")
        assert _post(port, iter([b"x" * 300] * 3), encode_chunked=True) == (200, b"900")
    assert CALLS == [1000, 900]


def test_the_limit_comes_from_the_environment_and_a_bad_value_is_named():
    assert limits.max_body_bytes({}) == limits.DEFAULT_MAX_BODY_BYTES
    assert limits.max_body_bytes({limits.MAX_BODY_VARIABLE: "5000"}) == 5000
    for bad in ("0", "-1", "64MB"):
        with pytest.raises(ValueError, match=f"{limits.MAX_BODY_VARIABLE}='{bad}'"):
            limits.max_body_bytes({limits.MAX_BODY_VARIABLE: bad})


def test_mlflow_models_serve_hands_its_environment_to_the_uvicorn_it_starts(monkeypatch):
    from mlflow.pyfunc import scoring_server

    monkeypatch.setenv("UVICORN_HTTP", PROTOCOL)
    command, env = scoring_server.get_cmd("/tmp/model", port=5000)
    assert command.startswith("uvicorn ") and env["UVICORN_HTTP"] == PROTOCOL


def test_uvicorn_picks_the_limited_protocol_and_its_limit_from_the_environment():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "UVICORN_HTTP": PROTOCOL, limits.MAX_BODY_VARIABLE: "100"}
    uvicorn_bin = Path(sys.executable).with_name("uvicorn")
    server = subprocess.Popen([str(uvicorn_bin), "tests.unit.test_serving_limits:echo", "--port", str(port),
                               "--lifespan", "off"], cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _ = _post(port, b"x" * 200)
                break
            except ConnectionRefusedError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()
                time.sleep(0.1)
        assert status == 413
        assert _post(port, b"x" * 100) == (200, b"100")
    finally:
        server.terminate()
        server.wait(10)
