"""Create an API token for an organization and print it once."""

from django.core.management.base import BaseCommand, CommandError

from tasks_app import services
from tasks_app.models import Organization


class Command(BaseCommand):
    help = "Create an API token for an organization; prints the raw token once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="SLUG", help="Organization slug.")
        parser.add_argument("--name", default="cli", help="A name to tell the token apart (default 'cli').")

    def handle(self, *args, org: str, name: str, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            known = ", ".join(Organization.objects.order_by("slug").values_list("slug", flat=True)) or "none"
            raise CommandError(f"Unknown organization {org!r} (known: {known}).")
        try:
            token, raw = services.api_token_create(organization=organization, name=name)
        except services.InvalidInput as exc:
            raise CommandError(exc.message) from None
        # The token alone on stdout, so `TOKEN=$(manage.py create_api_token --org acme)` works.
        self.stderr.write(f"Token {token.name!r} for {organization.slug} (starts {token.prefix}); shown only once:")
        self.stdout.write(raw)
