"""Resolve HITL requests whose deadline has passed, once or every N seconds."""

import time

from django.core.management.base import BaseCommand, CommandError

from tasks_app import services


class Command(BaseCommand):
    help = "Resolve pending HITL requests past their deadline as each request says (default: rejected, 'timed out')."

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=None, help="Keep running, checking every S seconds.")

    def handle(self, *args, every=None, **options):
        if every is not None and every <= 0:
            raise CommandError("--every must be a positive number of seconds.")
        while True:
            resolved = services.hitl_expire_due(every_organization=True)
            if resolved or every is None:
                self.stdout.write(f"Resolved {resolved} expired request{'s' if resolved != 1 else ''}.")
            if every is None:
                return
            time.sleep(every)
