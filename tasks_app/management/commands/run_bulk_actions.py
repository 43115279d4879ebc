"""Run the unfinished bulk actions (services.bulk_actions): once until none is left, or every N seconds.

The server runs each action in a background thread of the process that accepted it; this command
takes up what no process holds (a killed server's action, once its lease lapses) or, with
BULK_ACTIONS_IN_BACKGROUND=false on the servers, is the only runner.
"""

import time

from django.core.management.base import BaseCommand, CommandError

from tasks_app.models import BulkAction
from tasks_app.services import bulk_actions


class Command(BaseCommand):
    help = "Run unfinished bulk actions to their end (resuming any whose runner stopped)."

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=None, help="Keep running, looking every S seconds.")
        parser.add_argument("--batch", type=int, default=bulk_actions.BATCH, help="Tasks per batch (lease renewal).")
        parser.add_argument("--action", type=int, default=None, help="Only this bulk action (its id).")

    def handle(self, *args, every=None, batch=bulk_actions.BATCH, action=None, **options):
        if every is not None and every <= 0:
            raise CommandError("--every must be a positive number of seconds.")
        if batch < 1:
            raise CommandError("--batch must be at least 1.")
        while True:
            started = time.perf_counter()
            ran = bulk_actions.bulk_actions_run(batch=batch, action_id=action)
            for done in BulkAction.objects.filter(pk__in=ran).order_by("pk"):
                self.stdout.write(
                    f"Bulk action #{done.pk} ({bulk_actions.act_label(done.act, done.params)}): {done.state},"
                    f" {done.done} changed, {done.unchanged} already so, {done.refused} refused"
                    f"{f', {done.not_run} not reached' if done.not_run else ''} of {done.total}."
                )
            if ran or every is None:
                seconds = time.perf_counter() - started
                self.stdout.write(f"Ran {len(ran)} bulk action{'s' if len(ran) != 1 else ''} in {seconds:.1f} s.")
            if every is None:
                return
            time.sleep(every)
