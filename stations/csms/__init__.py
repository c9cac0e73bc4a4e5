from django.conf import settings
from django.utils.module_loading import import_string

from .base import CsmsAdapter

BACKENDS = {
    "simulator": "stations.csms.simulator.SimulatorAdapter",
}


def get_adapter() -> CsmsAdapter:
    name = settings.CSMS_BACKEND
    if name not in BACKENDS:
        raise ValueError(f"unknown CSMS_BACKEND {name!r}; choose one of {sorted(BACKENDS)}")
    return import_string(BACKENDS[name])()
