import logging

from celery import shared_task

from stations import scans
from stations.csms import simulator
from stations.csms.base import CsmsError
from stations.csms.ocpi import locations, messages
from stations.models import OcpiConnection

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def simulator_tick():
    simulator.tick()


@shared_task(ignore_result=True)
def scans_roll_up():
    """Past days' scan marks become counts; the marks are deleted (nothing identifying is kept)."""
    scans.roll_up()


@shared_task(ignore_result=True)
def scans_flush():
    """Scan marks held in Redis become ScanMark rows (the checkout page writes none itself)."""
    scans.flush()


@shared_task(ignore_result=True)
def ocpi_sync_all():
    """Pull Locations and Tariffs from every connected CPO that has an operator to file them under."""
    for pk in locations.syncable(OcpiConnection.objects.all()).values_list("pk", flat=True):
        ocpi_sync.delay(pk)


@shared_task(bind=True, ignore_result=True, max_retries=3)
def ocpi_sync(self, connection_id: int):
    # A failure is also kept on the connection (last_error) for staff; the next schedule tries again.
    try:
        locations.sync_pull(connection_id=connection_id)
    except CsmsError as exc:
        if exc.permanent:
            log.warning("ocpi sync of connection %s failed: %s", connection_id, exc)
            return
        raise self.retry(exc=exc, countdown=60) from exc
    except messages.Invalid as exc:  # no operator set: kept in last_error
        log.warning("ocpi sync of connection %s refused: %s", connection_id, exc)
