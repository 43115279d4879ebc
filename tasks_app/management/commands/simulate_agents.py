"""Keep demo tasks moving through their lifecycle, as agents would, until stopped."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tasks_app.models import Organization
from tasks_app.simulation import AgentSimulator


class Command(BaseCommand):
    help = "Simulate agents: claim, report activity, pause for HITL, finish and create tasks (Ctrl-C stops)."

    def add_arguments(self, parser):
        parser.add_argument("--rate", type=float, default=2.0, help="Changes per second (default 2).")
        parser.add_argument("--org", action="append", dest="orgs", metavar="SLUG", help="Only this organization.")
        parser.add_argument("--duration", type=float, default=None, help="Stop after this many seconds.")
        parser.add_argument("--seed", type=int, default=None, help="Random seed for a repeatable run.")

    def handle(self, *args, rate: float, orgs: list[str] | None, duration: float | None, seed: int | None, **opts):
        if rate <= 0:
            raise CommandError("--rate must be above 0")
        if orgs:
            missing = set(orgs) - set(Organization.objects.filter(slug__in=orgs).values_list("slug", flat=True))
            if missing:
                raise CommandError(f"Unknown organization: {', '.join(sorted(missing))}")
        if not settings.REDIS_URL:
            # The in-memory layer does not cross processes: these changes reach no open browser.
            self.stderr.write(
                "Note: no REDIS_URL, so browsers will not see these changes live; `make run` runs the "
                "simulator inside the server instead (TASKDESK_SIMULATE)."
            )
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
        simulator = AgentSimulator(organizations=orgs, seed=seed)
        verbose = opts.get("verbosity", 1) >= 2
        try:
            steps = simulator.run(
                rate, stop, duration=duration, on_step=(lambda line: self.stdout.write(line)) if verbose else None
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        self.stdout.write(f"Simulator stopped after {steps} steps.")
