"""Register with a CPO's OCPI platform, or invite a CPO to register with us.

    manage.py ocpi_connect "Acme CPO" --versions-url https://cpo.example/ocpi/versions --token TOKEN_A \
        --operator ACME        # the receipt prefix of the operator whose chargers these are
    manage.py ocpi_connect "Acme CPO" --invite      # prints our versions URL and a Token A to hand over
"""

from django.core.management.base import BaseCommand, CommandError

from stations.csms.base import CsmsError
from stations.csms.ocpi import credentials
from stations.models import OcpiConnection, Operator


class Command(BaseCommand):
    help = "Connect to a CPO over OCPI 2.2.1 (credentials handshake), or invite one to connect."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--versions-url", help="the CPO's OCPI versions endpoint")
        parser.add_argument("--token", help="the Token A the CPO gave us")
        parser.add_argument(
            "--raw-token", action="store_true", help="send the token without base64 (older peers)"
        )
        parser.add_argument(
            "--invite", action="store_true", help="issue a Token A for the CPO to register with us"
        )
        parser.add_argument(
            "--operator", help="receipt prefix of the operator that sells on these chargers"
        )

    def handle(self, name, versions_url, token, raw_token, invite, operator, **options):
        prefix, operator = operator, None
        if prefix:
            operator = Operator.objects.filter(receipt_prefix=prefix).first()
            if operator is None:
                raise CommandError(f"no operator with receipt prefix {prefix}")
        if invite:
            connection = credentials.connection_invite(name=name)
            if operator:
                OcpiConnection.objects.filter(pk=connection.pk).update(operator=operator)
            self.stdout.write(
                f"Give the CPO our versions URL {credentials.versions_url()}\n"
                f"and this Token A (shown once): {connection.token_ours}"
            )
            return
        if not (versions_url and token):
            raise CommandError("give --versions-url and --token, or --invite")
        fields = {
            "versions_url": versions_url,
            "token_theirs": token,
            "raw_token": raw_token,
            "state": OcpiConnection.State.PENDING,
            **({"operator": operator} if operator else {}),
        }
        connection, _ = OcpiConnection.objects.update_or_create(
            name=name,
            defaults=fields,
            create_defaults={**fields, "token_ours": credentials.new_token()},
        )
        try:
            connection = credentials.connection_register(connection_id=connection.pk)
        except (CsmsError, credentials.CredentialsInvalid) as exc:
            raise CommandError(f"registration failed: {exc}") from exc
        modules = ", ".join(sorted({e.get("identifier", "?") for e in connection.endpoints}))
        self.stdout.write(
            f"Connected to {connection.business_name or name} "
            f"({connection.country_code}*{connection.party_id}), OCPI {connection.version}: {modules}"
        )
