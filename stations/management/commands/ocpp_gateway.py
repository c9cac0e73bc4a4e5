import asyncio
import logging

from django.conf import settings
from django.core.management.base import BaseCommand

from stations.csms.ocpp.gateway import Gateway


class Command(BaseCommand):
    help = "Run the OCPP gateway: chargers connect to ws://HOST:PORT/ocpp/<identity>."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address chargers connect to.")
        parser.add_argument("--port", type=int, default=9000)
        parser.add_argument(
            "--control-host",
            default="127.0.0.1",
            help="Address workers reach this gateway on (stored on each station it holds).",
        )
        parser.add_argument("--control-port", type=int, default=9001)

    def handle(self, *args, host, port, control_host, control_port, **options):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("ocpp").setLevel(logging.WARNING)  # it logs every message at INFO
        gateway = Gateway(
            host=host,
            port=port,
            control_host=control_host,
            control_port=control_port,
            command_timeout=settings.OCPP_COMMAND_TIMEOUT_SECONDS,
        )
        self.stdout.write(f"OCPP gateway on ws://{host}:{port}/ocpp/<identity>", ending="\n")
        self.stdout.flush()
        asyncio.run(gateway.serve())
