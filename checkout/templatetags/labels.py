from django import template

from checkout import labels, reasons

register = template.Library()

register.filter("session_state", labels.session_state)
register.filter("evse_state", labels.evse_state)
register.filter("failure_reason", reasons.for_driver)
