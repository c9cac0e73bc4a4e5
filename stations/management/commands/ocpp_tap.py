import asyncio
import json
import logging

from django.core.management.base import BaseCommand, CommandError

from stations import demo
from stations.csms.ocpp.charger import SimulatedStation
from stations.models import ChargingStation


class Command(BaseCommand):
    help = (
        "Simulate a card tap on an OCPP 2.1 station's payment terminal: connect as the station, "
        "charge, end, send NotifySettlement and print the receipt the CSMS answered. The station "
        "must not be connected by `ocpp_charger` meanwhile (the gateway keeps the newest socket)."
    )

    def add_arguments(self, parser):
        parser.add_argument("identity")
        parser.add_argument("--url", default="ws://127.0.0.1:9000/ocpp")
        parser.add_argument("--password", default="", help="Default: the demo password.")
        parser.add_argument("--seconds", type=float, default=4, help="How long it charges.")
        parser.add_argument(
            "--amount", type=float, help="What the terminal settles (default: the CSMS's cost)."
        )
        parser.add_argument("--speedup", type=float, default=60)
        parser.add_argument("--meter-interval", type=float, default=1)

    def handle(self, *args, identity, url, password, seconds, amount, **options):
        logging.getLogger("ocpp").setLevel(logging.WARNING)
        row = (
            ChargingStation.objects.filter(identity=identity)
            .prefetch_related("evses__evse__connectors")
            .first()
        )
        if row is None:
            raise CommandError(f"no OCPP station {identity}")
        evses = {
            b.evse_number: float(max(c.max_power_kw for c in b.evse.connectors.all()))
            for b in row.evses.all()
            if b.evse.connectors.all()
        }
        sim = SimulatedStation(
            url=url,
            identity=identity,
            password=password or demo.ocpp_password(identity),
            version="ocpp2.1",
            evses=evses or None,
            speedup=options["speedup"],
            meter_interval=options["meter_interval"],
        )

        async def tap():
            running = asyncio.create_task(sim.run(reconnect=False))
            try:
                await asyncio.wait_for(sim.online.wait(), 15)
                return await sim.tap(seconds=seconds, amount=amount)
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)

        try:
            result = asyncio.run(tap())
        except (TimeoutError, ValueError) as exc:
            raise CommandError(f"tap failed: {exc!r}") from exc
        self.stdout.write(json.dumps(result))
