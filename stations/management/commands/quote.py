"""Price a charging session against an OCPI 2.2.1 tariff file and print the quote as JSON.

    python manage.py quote --tariff tariff.json --start 2024-01-15T09:30:00+01:00 \\
        --end 2024-01-15T12:00:00+01:00 --kwh 20 --parking-minutes 15 --tz Europe/Amsterdam
"""

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.core.management import BaseCommand, CommandError

from stations.tariffs import TariffError, Usage, quote


def _datetime(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise CommandError(f"{option}: not an ISO 8601 date-time: {value!r}") from None
    # No offset given: the help text promises UTC.
    return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=UTC)


def _number(value, option: str) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise CommandError(f"{option}: not a number: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise CommandError(f"{option}: must be a non-negative number, got {value!r}")
    return number


def quote_from_args(
    tariff, start, end, kwh, parking_minutes=0, max_current=None, max_power=None, tz=None
) -> dict:
    """The command without argparse: parse and check the inputs, return Quote.as_dict().

    Every input problem (file, JSON, dates, numbers, time zone, tariff) becomes a CommandError.
    """
    try:
        with open(tariff, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise CommandError(f"--tariff: cannot read {tariff}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CommandError(f"--tariff: {tariff} is not valid JSON: {exc}") from None
    try:
        usage = Usage(
            start=_datetime(start, "--start"),
            end=_datetime(end, "--end"),
            kwh=_number(kwh, "--kwh"),
            parking_minutes=_number(parking_minutes, "--parking-minutes") or Decimal(0),
            max_current_a=_number(max_current, "--max-current"),
            max_power_kw=_number(max_power, "--max-power"),
        )
        return quote(data, usage, tz=tz).as_dict()
    except TariffError as exc:
        raise CommandError(f"--tariff: {tariff} is not a usable OCPI 2.2.1 tariff: {exc}") from None
    except ValueError as exc:  # Usage checks (end before start, ...) and unknown --tz
        raise CommandError(str(exc)) from None


class Command(BaseCommand):
    help = (
        "Price a charging session with an OCPI 2.2.1 tariff (JSON file) and print the quote as "
        "JSON. Date-times are ISO 8601; without a UTC offset they are taken as UTC."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--tariff", required=True, metavar="FILE.json", help="OCPI 2.2.1 Tariff object as JSON"
        )
        parser.add_argument(
            "--start",
            required=True,
            metavar="ISO8601",
            help="plug-in time, e.g. 2024-01-15T09:30:00+01:00 (no offset = UTC)",
        )
        parser.add_argument(
            "--end",
            required=True,
            metavar="ISO8601",
            help="plug-out time, end of the whole session (no offset = UTC)",
        )
        parser.add_argument("--kwh", required=True, metavar="X", help="energy delivered in kWh")
        parser.add_argument(
            "--parking-minutes",
            default="0",
            metavar="M",
            help="the last M minutes of the session were parking, not charging",
        )
        parser.add_argument("--max-current", metavar="A", help="maximum charging current in A")
        parser.add_argument("--max-power", metavar="KW", help="maximum charging power in kW")
        parser.add_argument(
            "--tz",
            help="IANA time zone of the location for time-of-day/day "
            "restrictions, e.g. Europe/Amsterdam (default UTC)",
        )

    def handle(self, *args, **options):
        result = quote_from_args(
            options["tariff"],
            options["start"],
            options["end"],
            options["kwh"],
            parking_minutes=options["parking_minutes"],
            max_current=options["max_current"],
            max_power=options["max_power"],
            tz=options["tz"],
        )
        self.stdout.write(json.dumps(result, indent=2))
