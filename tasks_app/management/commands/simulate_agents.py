"""Drive a running Taskdesk over its agent APIs, as real agents would, until stopped (Ctrl-C).

By default the command creates its own API tokens (one per organization and face, named
`simulator-xpander`, `simulator-agentex`, `simulator-jsonrpc`, `simulator-api`) in the database
the server uses, and revokes them when it stops. For a remote server, pass `--token ORG=RAW`
(one token per organization, used by every face) and no database is touched.
"""

import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from tasks_app import services
from tasks_app.models import ApiToken, Organization
from tasks_app.simulation import FACES, Simulator, SimulatorError, Stats


def _token_option(value: str) -> tuple[str, str]:
    org, sep, raw = value.partition("=")
    if not sep or not org.strip() or not raw.strip():
        raise CommandError(f"--token takes ORG=TOKEN, got {value!r}")
    return org.strip(), raw.strip()


class Command(BaseCommand):
    help = (
        "Simulate agents against a running server through the xpander, Agentex, JSON-RPC and native "
        "APIs: create, claim, report activity and metrics, pause for HITL, finish (Ctrl-C stops)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The server (default %(default)s).")
        parser.add_argument("--rate", type=float, default=2.0, help="Changes per second in total (default 2).")
        parser.add_argument("--org", action="append", dest="orgs", metavar="SLUG", help="Only this organization.")
        parser.add_argument(
            "--token",
            action="append",
            dest="tokens",
            metavar="ORG=TOKEN",
            help="Use this token for ORG instead of creating tokens (repeat per organization).",
        )
        parser.add_argument("--duration", type=float, default=None, help="Stop after this many seconds.")
        parser.add_argument("--seed", type=int, default=None, help="Random seed for a repeatable run.")
        parser.add_argument(
            "--hitl-poll", type=float, default=3.0, help="Seconds between looks at a pending HITL request."
        )
        parser.add_argument("--wait", type=float, default=30.0, help="Seconds to wait for the server to answer.")

    def handle(self, *args, url: str, rate: float, orgs, tokens, duration, seed, hitl_poll, wait, **options):
        if rate <= 0:
            raise CommandError("--rate must be above 0")
        if hitl_poll <= 0:
            raise CommandError("--hitl-poll must be above 0")
        created: list[ApiToken] = []
        if tokens:
            given = dict(_token_option(value) for value in tokens)
            if orgs:
                given = {org: raw for org, raw in given.items() if org in orgs}
                if set(orgs) - set(given):
                    raise CommandError(f"No --token for: {', '.join(sorted(set(orgs) - set(given)))}")
            by_org = {org: dict.fromkeys(FACES, raw) for org, raw in given.items()}
        else:
            by_org, created = self._create_tokens(orgs)

        verbose = options.get("verbosity", 1) >= 2
        # httpx logs every request at INFO; the simulator reports its own changes.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        handlers = {}
        simulator = None
        try:
            simulator = Simulator(
                url,
                by_org,
                rate=rate,
                seed=seed,
                hitl_poll=hitl_poll,
                on_change=(lambda line: self.stdout.write(line)) if verbose else None,
            )
            if threading.current_thread() is threading.main_thread():
                # Ctrl-C (and `make run`'s trap) ends the run cleanly, so the tokens get revoked.
                for signum in (signal.SIGINT, signal.SIGTERM):
                    handlers[signum] = signal.signal(signum, lambda *_: simulator.stop_from_signal_handler())
            if not simulator.wait_for_server(timeout=wait):
                if simulator.stop_event.is_set():
                    return
                raise CommandError(f"No answer from {url} after {wait:g} s; is the server running?")
            try:
                simulator.check_tokens()
            except SimulatorError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                f"Simulating agents on {', '.join(by_org)} against {url} at {rate:g} changes/s "
                f"(faces: {', '.join(FACES)}). Ctrl-C stops."
            )
            stats = simulator.run(duration, report=self._report(simulator), report_every=60.0)
            self.stdout.write(f"Simulator stopped: {stats.summary()}")
        finally:
            if simulator is not None:
                simulator.close()
            # Revoke before the signal handlers are restored: `make run`'s trap sends a TERM right
            # after the Ctrl-C, and with the default handler back that would end us first.
            for token in created:
                services.api_token_revoke(token=token)
            for signum, previous in handlers.items():
                signal.signal(signum, previous)

    def _create_tokens(self, slugs: list[str] | None) -> tuple[dict[str, dict[str, str]], list[ApiToken]]:
        qs = Organization.objects.order_by("slug")
        if slugs:
            missing = set(slugs) - set(qs.filter(slug__in=slugs).values_list("slug", flat=True))
            if missing:
                raise CommandError(f"Unknown organization: {', '.join(sorted(missing))}")
            qs = qs.filter(slug__in=slugs)
        organizations = list(qs)
        if not organizations:
            raise CommandError("No organizations yet: run `manage.py seed_demo` first.")
        by_org: dict[str, dict[str, str]] = {}
        created: list[ApiToken] = []
        for organization in organizations:
            for face in FACES:
                token, raw = services.api_token_create(organization=organization, name=f"simulator-{face}")
                created.append(token)
                by_org.setdefault(organization.slug, {})[face] = raw
        # The run may last hours without touching the database: do not hold a connection open
        # (unless inside an outer transaction, e.g. a test's, where it is not ours to close).
        if not connection.in_atomic_block:
            connection.close()
        return by_org, created

    def _report(self, simulator: Simulator):
        def report(stats: Stats) -> None:
            waiting = simulator.waiting_for_people()
            self.stdout.write(f"Simulator: {stats.summary()}; {waiting} task(s) waiting for a person")

        return report
