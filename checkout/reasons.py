"""Why a session failed, as the driver reads it: stored in English, translated when shown.

The services store failure reasons (ChargingSession.failure_reason) and checkout refusals in
English, marked with gettext_noop so the catalogues carry them; staff and the admin read the
English. Pages and answers to the driver pass them through for_driver(), which looks them up in
the active language. A text no catalogue knows (a CSMS's own words) is shown as it is.
"""

from django.utils.translation import gettext
from django.utils.translation import gettext_noop as N_

GATEWAY_UNREACHABLE = N_("The payment service could not be reached.")
AUTHENTICATION_INCOMPLETE = N_("Card authentication was not completed.")


def for_driver(text: str) -> str:
    return gettext(text) if text else ""
