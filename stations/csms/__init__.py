from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.module_loading import import_string

from .base import CsmsAdapter

if TYPE_CHECKING:
    from stations.models import Location

BACKENDS = {
    "simulator": "stations.csms.simulator.SimulatorAdapter",
    "ocpi": "stations.csms.ocpi.commands.OcpiAdapter",
    "ocpp": "stations.csms.ocpp.adapter.OcppAdapter",
}


def get_adapter(location: Location | None = None) -> CsmsAdapter:
    """The adapter for a location: OCPI for one that came from an OCPI connection, OCPP for one
    whose chargers connect to our gateway, else CSMS_BACKEND."""
    if location is not None and location.ocpi_connection_id:
        name = "ocpi"
    elif location is not None and location.csms == "ocpp":
        name = "ocpp"
    else:
        name = settings.CSMS_BACKEND
    if name not in BACKENDS:
        raise ValueError(f"unknown CSMS_BACKEND {name!r}; choose one of {sorted(BACKENDS)}")
    return import_string(BACKENDS[name])()
