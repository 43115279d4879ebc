"""Settings of the bare Django baseline (bench_writes.py): Taskdesk's settings, no middleware, one view."""

from dashboard.settings import *  # noqa: F403

ROOT_URLCONF = "_bare_urls"
MIDDLEWARE: list[str] = []
