"""`make test` picks PostgreSQL and Redis at their default addresses when they answer (tests/local_services.py)."""

import socket
import socketserver
import threading

import pytest

from tests import local_services


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FakeRedis(socketserver.BaseRequestHandler):
    def handle(self):
        if self.request.recv(64).startswith(b"PING"):
            self.request.sendall(b"+PONG\r\n")


@pytest.fixture
def fake_redis():
    server = socketserver.TCPServer(("127.0.0.1", 0), _FakeRedis)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_services_that_answer_are_used_and_said_so(monkeypatch, capsys, fake_redis):
    closed = _closed_port()
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setattr(local_services, "POSTGRES", ("127.0.0.1", closed, "postgres://x@127.0.0.1/x"))
    monkeypatch.setattr(local_services, "REDIS", ("127.0.0.1", fake_redis, "redis://127.0.0.1:1/0"))
    local_services.main()
    out, err = capsys.readouterr()
    assert out.strip() == "export REDIS_URL=redis://127.0.0.1:1/0"  # eval'd by make test
    assert f"nothing answers at 127.0.0.1:{closed}; tests that need it are skipped" in err
    assert f"REDIS_URL=redis://127.0.0.1:1/0 (answering at 127.0.0.1:{fake_redis})" in err


def test_a_port_that_answers_something_else_is_not_redis(monkeypatch, capsys):
    closed = _closed_port()
    with socket.socket() as listener:  # accepts, then says nothing: not a Redis
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not local_services.answers("127.0.0.1", port, b"PING\r\n", b"+PONG")
    assert not local_services.answers("127.0.0.1", closed, b"", b"")


def test_variables_already_set_win(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgres://me@db:5432/mine")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/3")
    local_services.main()
    out, err = capsys.readouterr()
    assert out.strip() == ""
    assert "DATABASE_URL from the environment (postgres://me@db:5432/mine)" in err
    assert "REDIS_URL from the environment (redis://cache:6379/3)" in err
