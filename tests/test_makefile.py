"""`make run` as a newcomer types it: where it listens, and the address the simulator drives (dry runs)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make (apt-get install -y make)")


def dry_run(**variables) -> str:
    args = ["make", "-n", "run", "VENV=/venv", *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_it_listens_on_port_and_host_given_and_the_simulator_follows():
    out = dry_run(PORT="9000")
    assert "daphne -v 0 -b 127.0.0.1 -p 9000 " in out
    assert "simulate_agents --url http://127.0.0.1:9000 " in out
    assert "listens on http://127.0.0.1:9000/" in out
    assert "/venv/bin/pip install" in out and "requirements-dev.txt" not in out  # the runtime only


def test_on_every_interface_it_is_reached_through_127_0_0_1():
    """0.0.0.0 is where daphne binds, not a host a browser or the simulator can name (DisallowedHost)."""
    out = dry_run(HOST="0.0.0.0", PORT="9000")
    assert "daphne -v 0 -b 0.0.0.0 -p 9000 " in out
    assert "simulate_agents --url http://127.0.0.1:9000 " in out
    assert "listens on http://127.0.0.1:9000/" in out and "ALLOWED_HOSTS" in out
