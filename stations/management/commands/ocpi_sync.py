"""Pull Locations and Tariffs from connected CPOs now (the beat schedule does it every OCPI_SYNC_MINUTES).

manage.py ocpi_sync              # every connected CPO with an operator
manage.py ocpi_sync "Acme CPO"   # one
"""

from django.core.management.base import BaseCommand, CommandError

from stations.csms.base import CsmsError
from stations.csms.ocpi import locations, messages
from stations.models import OcpiConnection


class Command(BaseCommand):
    help = "Pull Locations and Tariffs from connected CPOs (OCPI 2.2.1)."

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?")

    def handle(self, name, **options):
        connections = OcpiConnection.objects.filter(state=OcpiConnection.State.CONNECTED)
        if name:
            connections = connections.filter(name=name)
            if not connections.exists():
                raise CommandError(f"no connected CPO named {name}")
        failed = False
        for connection in connections:
            try:
                self.stdout.write(
                    f"{connection.name}: {locations.sync_pull(connection_id=connection.pk)}"
                )
            except (CsmsError, messages.Invalid) as exc:
                failed = True
                self.stderr.write(f"{connection.name}: {exc}")
        if failed:
            raise CommandError("some pulls failed")
