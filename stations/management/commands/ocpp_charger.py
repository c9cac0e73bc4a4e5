import asyncio
import logging

from django.core.management.base import BaseCommand, CommandError

from stations import demo
from stations.csms.ocpp.charger import MODES, SimulatedStation
from stations.models import ChargingStation


class Command(BaseCommand):
    help = "Connect simulated OCPP chargers (the demo stations by default) to the gateway."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="ws://127.0.0.1:9000/ocpp")
        parser.add_argument(
            "--station", action="append", help="Identity (repeatable); default: the demo ones."
        )
        parser.add_argument(
            "--password", default="", help="Default: the demo password (seed_demo)."
        )
        parser.add_argument("--mode", choices=MODES, default="accept")
        parser.add_argument("--speedup", type=float, default=60)
        parser.add_argument("--meter-interval", type=float, default=2)

    def handle(self, *args, url, station, password, mode, speedup, meter_interval, **options):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("ocpp").setLevel(logging.WARNING)
        identities = station or list(demo.OCPP_STATIONS)
        sims = []
        for row in ChargingStation.objects.filter(identity__in=identities).prefetch_related(
            "evses__evse__connectors"
        ):
            evses = {
                b.evse_number: float(max(c.max_power_kw for c in b.evse.connectors.all()))
                for b in row.evses.all()
                if b.evse.connectors.all()
            }
            sims.append(
                SimulatedStation(
                    url=url,
                    identity=row.identity,
                    password=password or demo.ocpp_password(row.identity),
                    version=demo.OCPP_STATIONS.get(row.identity, row.protocol),
                    evses=evses or None,
                    mode=mode,
                    speedup=speedup,
                    meter_interval=meter_interval,
                )
            )
        if not sims:
            raise CommandError(f"no stations {identities}: run manage.py seed_demo first")
        self.stdout.write(f"charging stations {[s.identity for s in sims]} -> {url}")
        self.stdout.flush()

        async def run_all():
            await asyncio.gather(*(sim.run() for sim in sims))

        asyncio.run(run_all())
