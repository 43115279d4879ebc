"""Which services `make test` runs against: prints shell `export` lines for eval.

DATABASE_URL / REDIS_URL already set win. Otherwise PostgreSQL at 127.0.0.1:5432 and Redis at
127.0.0.1:6379 are used when they answer; when one does not, the suite falls back to SQLite or
the in-memory layer and skips (with the reason) only the tests that need it. Under CI a missing
service is an error (tests/conftest.py refuses to run).
"""

import os
import socket
import sys

POSTGRES = ("127.0.0.1", 5432, "postgres://postgres@127.0.0.1:5432/postgres")
REDIS = ("127.0.0.1", 6379, "redis://127.0.0.1:6379/0")


def answers(host: str, port: int, probe: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as conn:
            if not probe:
                return True
            conn.sendall(probe)
            return conn.recv(64).startswith(expect)
    except OSError:
        return False


def main() -> None:
    lines = []
    for name, (host, port, url), probe, expect in (
        ("DATABASE_URL", POSTGRES, b"", b""),
        ("REDIS_URL", REDIS, b"PING\r\n", b"+PONG"),
    ):
        if os.environ.get(name):
            print(f"make test: {name} from the environment ({os.environ[name]})", file=sys.stderr)
        elif answers(host, port, probe, expect):
            print(f"make test: {name}={url} (answering at {host}:{port})", file=sys.stderr)
            lines.append(f"export {name}={url}")
        else:
            print(f"make test: nothing answers at {host}:{port}; tests that need it are skipped", file=sys.stderr)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
