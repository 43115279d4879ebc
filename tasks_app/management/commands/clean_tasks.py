"""Retention: strip the content of tasks finished more than --older-than ago (services.retention).

    manage.py clean_tasks --older-than 90d [--status completed,failed] [--org acme] [--batch 250]

Runs in batches of --batch tasks, each its own short transaction; run it again to continue
after an interruption (what is cleaned stays cleaned, the batch in flight rolls back).
"""

import re
import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from tasks_app import lifecycle
from tasks_app.models import Face, Organization
from tasks_app.services import Actor
from tasks_app.services.retention import DEFAULT_BATCH, MAX_BATCH, eligible_tasks, next_batch, tasks_clean

AGE_RE = re.compile(r"^(\d{1,6})([mhdw])$")
AGE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(raw: str) -> timedelta:
    """`90d`, `12h`, `30m` or `2w` as a timedelta; ValueError otherwise."""
    match = AGE_RE.fullmatch(raw.strip())
    if match is None:
        raise ValueError(f"--older-than takes a number and a unit (m, h, d or w), like 90d, not {raw!r}.")
    return timedelta(**{AGE_UNITS[match[2]]: int(match[1])})


def parse_statuses(values: list[str]) -> tuple[str, ...]:
    """Finished statuses from repeated or comma-separated --status; ValueError for any other."""
    statuses = [s.strip() for value in values for s in value.split(",") if s.strip()]
    refused = [s for s in statuses if s not in lifecycle.TERMINAL]
    if refused:
        allowed = ", ".join(s for s in lifecycle.STATUSES if s in lifecycle.TERMINAL)
        raise ValueError(f"Only finished tasks are cleaned; --status takes {allowed}, not {', '.join(refused)}.")
    return tuple(dict.fromkeys(statuses))


class Command(BaseCommand):
    help = (
        "Strip the content (input, result, activity bodies, metadata, params, payload extension) of tasks "
        "finished more than --older-than ago, keeping each task's record, audit trail and counts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 90d, 12h, 2w, 30m.")
        parser.add_argument(
            "--status",
            action="append",
            default=[],
            metavar="STATUS",
            help="Only these finished statuses (repeat or comma-separate).",
        )
        parser.add_argument(
            "--org", action="append", default=[], metavar="SLUG", help="Only this organization (repeatable)."
        )
        parser.add_argument(
            "--batch", type=int, default=DEFAULT_BATCH, help=f"Tasks per transaction (default {DEFAULT_BATCH})."
        )
        parser.add_argument("--dry-run", action="store_true", help="Count the eligible tasks; change nothing.")
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")

    def handle(self, *args, older_than, status, org, batch, dry_run, no_progress, **options):
        try:
            age = parse_age(older_than)
            statuses = parse_statuses(status)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not 1 <= batch <= MAX_BATCH:
            raise CommandError(f"--batch must be between 1 and {MAX_BATCH}.")
        organization_ids = self._organizations(org)
        cutoff = timezone.now() - age
        qs = eligible_tasks(cutoff=cutoff, statuses=statuses, organization_ids=organization_ids)
        total = qs.count()
        scope = f"finished before {cutoff:%Y-%m-%d %H:%M} UTC"
        if dry_run:
            self.stdout.write(f"{total} task{'s' if total != 1 else ''} to clean ({scope}); nothing changed.")
            return
        actor = Actor.system("clean_tasks", face=Face.COMMAND)
        bar = tqdm(total=total, unit="task", desc="clean_tasks", disable=no_progress or None)
        done = skipped = activity = events = 0
        longest = lock_longest = 0.0
        started = time.monotonic()
        after = 0
        try:
            while pks := next_batch(qs, after_pk=after, size=batch):
                result = tasks_clean(
                    task_pks=pks, actor=actor, cutoff=cutoff, statuses=statuses, organization_ids=organization_ids
                )
                after = pks[-1]
                done += result.tasks
                skipped += result.skipped
                activity += result.activity_entries
                events += result.events_rewritten
                longest = max(longest, result.transaction_seconds)
                lock_longest = max(lock_longest, result.event_lock_seconds)
                bar.update(len(pks))
        except KeyboardInterrupt:
            bar.close()
            raise CommandError(
                f"Interrupted after cleaning {done} tasks; what is cleaned stays cleaned. Run the same command "
                "again to continue.",
                returncode=130,
            ) from None
        bar.close()
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        self.stdout.write(
            f"Cleaned {done} task{'s' if done != 1 else ''} ({scope}): {activity} activity entries, "
            f"{events} earlier events rewritten, in {elapsed:.1f} s ({rate:,.0f} tasks/s); longest transaction "
            f"{longest * 1000:.0f} ms, event lock held at most {lock_longest * 1000:.0f} ms."
        )
        if skipped:
            self.stdout.write(
                f"{skipped} task{'s were' if skipped != 1 else ' was'} being changed at the time (or no longer "
                "eligible) and left alone; run the command again to clean them."
            )

    def _organizations(self, slugs: list[str]) -> tuple[int, ...]:
        slugs = [s.strip() for value in slugs for s in value.split(",") if s.strip()]
        if not slugs:
            return ()
        found = dict(Organization.objects.filter(slug__in=slugs).values_list("slug", "pk"))
        unknown = [slug for slug in slugs if slug not in found]
        if unknown:
            known = ", ".join(Organization.objects.order_by("slug").values_list("slug", flat=True)) or "none"
            raise CommandError(f"Unknown organization {', '.join(map(repr, unknown))} (known: {known}).")
        return tuple(found[slug] for slug in slugs)
