"""Wait until a URL answers (any HTTP status), or its server process ends: `make run` starts the
agent simulator only once daphne serves, so the two do not start Django side by side on a small
machine (the sign-in page answers sooner). Standard library only: no Django start of its own.

    python dashboard/wait_for_server.py URL SERVER_PID [TIMEOUT_SECONDS]

Stopped while waiting (Ctrl-C, or a TERM to make's process group), it exits at once with the
shell's status for that signal, never *by* the signal: the recipe's shell would print
"Terminated" for a foreground command a TERM ended. Its handlers end the process with os._exit
and so does its own exit, because Python's exit puts the default handlers back first, and a TERM
landing in that last moment (just as the server answers) would end it by the signal after all.
"""

import os
import signal

if __name__ == "__main__":  # first, before the imports below take their time
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))

import sys  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402


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
    os._exit(main(sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:4])))
