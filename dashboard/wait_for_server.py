"""Wait until a URL answers (any HTTP status), or its server process ends: `make run` starts the
agent simulator only once daphne serves, so the two do not start Django side by side on a small
machine (the sign-in page answers sooner). Standard library only: no Django start of its own.

    python dashboard/wait_for_server.py URL SERVER_PID [TIMEOUT_SECONDS]
"""

import os
import signal
import sys
import time
import urllib.error
import urllib.request


def main(url: str, pid: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)  # the server still runs
        except OSError:
            return 1
        try:
            urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 (the URL make run serves)
            return 0
        except urllib.error.HTTPError:
            return 0  # it answers
        except OSError:
            time.sleep(0.2)
    return 1


if __name__ == "__main__":
    # Stopped while waiting (Ctrl-C, or SIGTERM to make's group): exit quietly, so the shell prints
    # no "Terminated" and make run's trap stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main(sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:4])))
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C while waiting: make run's trap stops the server, quietly
