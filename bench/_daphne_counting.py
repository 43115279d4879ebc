"""daphne, with every fragment render counted (for bench_fanout.py).

Runs the daphne command line unchanged, after wrapping tasks_app.live.fragments.render_event_html
(tasks_app.live.cache looks it up at call time) so that each render appends "<event id> <page>" to
the file named by BENCH_RENDER_LOG. The bench reads that file to count renders per event.

    BENCH_RENDER_LOG=/tmp/renders.log python bench/_daphne_counting.py -b 127.0.0.1 -p 8000 dashboard.asgi:application
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

import django  # noqa: E402

django.setup()

from daphne.cli import CommandLineInterface  # noqa: E402

from tasks_app.live import fragments as live_fragments  # noqa: E402

_render = live_fragments.render_event_html
_log = open(os.environ["BENCH_RENDER_LOG"], "a", buffering=1)  # noqa: SIM115 (open for the process's life)


def counting_render(event, *, page: str, can_edit: bool, **view) -> str:
    _log.write(f"{event.pk} {page}\n")
    return _render(event, page=page, can_edit=can_edit, **view)


live_fragments.render_event_html = counting_render

if __name__ == "__main__":
    CommandLineInterface.entrypoint()
