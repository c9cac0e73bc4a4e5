from django.core.management.base import BaseCommand, CommandError

from stations import qr
from stations.models import Evse


class Command(BaseCommand):
    help = "Print the signed checkout URL printed on an EVSE's QR sticker."

    def add_arguments(self, parser):
        parser.add_argument(
            "evse_id", help='The EVSE ID, e.g. "NL*DPY*E0001*1" (quote it in the shell).'
        )

    def handle(self, *args, evse_id, **options):
        evse = Evse.objects.filter(evse_id__iexact=evse_id.strip()).first()
        if evse is None:
            raise CommandError(f"No EVSE with id {evse_id!r}.")
        self.stdout.write(qr.url_for(evse))
