"""Names of states and reasons as the driver reads them, in the active language.

The models' choices keep their English labels for staff and the admin; the driver's pages and
documents look the code up here instead.
"""

from django.utils.translation import pgettext_lazy

SESSION_STATES = {
    "created": pgettext_lazy("session state", "Starting checkout"),
    "authorizing": pgettext_lazy("session state", "Authorising payment"),
    "authorized": pgettext_lazy("session state", "Payment held"),
    "starting": pgettext_lazy("session state", "Starting"),
    "charging": pgettext_lazy("session state", "Charging"),
    "stopping": pgettext_lazy("session state", "Stopping"),
    "finished": pgettext_lazy("session state", "Finished"),
    "failed": pgettext_lazy("session state", "Not started"),
}

EVSE_STATES = {
    "AVAILABLE": pgettext_lazy("charger state", "Available"),
    "CHARGING": pgettext_lazy("charger state", "In use"),
    "OUT_OF_ORDER": pgettext_lazy("charger state", "Out of order"),
    "UNKNOWN": pgettext_lazy("charger state", "Status unknown"),
}

REFUND_REASONS = {
    "requested_by_customer": pgettext_lazy("refund reason", "Requested by the driver"),
    "duplicate": pgettext_lazy("refund reason", "Duplicate payment"),
    "fraudulent": pgettext_lazy("refund reason", "Fraudulent payment"),
    "service_issue": pgettext_lazy("refund reason", "Charging problem"),
}


def session_state(code: str) -> str:
    return str(SESSION_STATES.get(code, code))


def evse_state(code: str) -> str:
    return str(EVSE_STATES.get(code, code))


def refund_reason(code: str) -> str:
    return str(REFUND_REASONS.get(code, code))
