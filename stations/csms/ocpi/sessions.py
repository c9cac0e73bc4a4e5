"""Sessions and CDRs a CPO pushes to us, matched to our purchases and handed to checkout.

Matching order: our authorization_reference, then the CPO's session id, then the token uid we
started with (ids are compared case-insensitively, as OCPI's CiString asks). What matches nothing
is stored for staff, never dropped. Older Session versions (by last_updated) change nothing.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q

from stations.models import OcpiCdr, OcpiConnection, OcpiSession

from ..base import SessionStatus, SessionUpdate, deliver_update
from . import messages

log = logging.getLogger(__name__)


class UnknownSession(LookupError):
    pass


def _match(
    connection: OcpiConnection, *, reference: str, session_id: str, token_uid: str
) -> OcpiSession | None:
    records = OcpiSession.objects.select_for_update().filter(connection=connection)
    for lookup in (
        Q(reference__iexact=reference) if reference else None,
        Q(session_id__iexact=session_id) if session_id else None,
        Q(token_uid__iexact=token_uid, reference__isnull=False) if token_uid else None,
    ):
        if lookup is not None and (record := records.filter(lookup).order_by("pk").first()):
            return record
    return None


def stored(connection: OcpiConnection, country_code: str, party_id: str, session_id: str):
    """The Session the CPO has sent under these ids (OCPI ids compare case-insensitively)."""
    return OcpiSession.objects.filter(
        connection=connection,
        country_code__iexact=country_code,
        party_id__iexact=party_id,
        session_id__iexact=session_id,
    )


def session_put(
    *, connection: OcpiConnection, country_code: str, party_id: str, session_id: str, data
) -> OcpiSession:
    session = messages.parse_session(data)
    if session.id.lower() != session_id.lower():
        raise messages.Invalid("id: differs from the session id in the URL")
    with transaction.atomic():
        record = _match(
            connection,
            reference=session.authorization_reference,
            session_id=session.id,
            token_uid=session.token_uid,
        )
        if record is None:
            log.warning(
                "ocpi: Session %s*%s %s from %s matches no purchase: kept for staff",
                country_code,
                party_id,
                session_id,
                connection.name,
            )
            record = OcpiSession(connection=connection)
        return _store(record, country_code, party_id, session, data)


def session_patch(
    *, connection: OcpiConnection, country_code: str, party_id: str, session_id: str, patch
) -> OcpiSession:
    with transaction.atomic():
        record = stored(connection, country_code, party_id, session_id).select_for_update().first()
        if record is None:
            raise UnknownSession(session_id)
        merged = messages.merge_session_patch(record.data, patch)
        return _store(record, country_code, party_id, messages.parse_session(merged), merged)


def _store(
    record: OcpiSession, country_code: str, party_id: str, session: messages.Session, data: dict
) -> OcpiSession:
    if record.data:
        known = messages.parse_session(record.data).last_updated
        if session.last_updated < known:
            log.info(
                "ocpi: Session %s update of %s is older than %s: ignored",
                session.id,
                session.last_updated,
                known,
            )
            return record
    record.country_code, record.party_id, record.session_id = country_code, party_id, session.id
    record.data = data
    record.save()
    if record.reference:
        deliver_update(
            SessionUpdate(
                reference=record.reference,
                status=SessionStatus.__members__.get(
                    session.status, SessionStatus.PENDING
                ),  # RESERVATION: not yet
                kwh=session.kwh,
                started_at=session.start,
                ended_at=session.end,
                measured_at=session.last_updated,
                parking_minutes=session.parking_hours * 60,
                csms_session_id=session.id,
            )
        )
    return record


def cdr_post(*, connection: OcpiConnection, data) -> tuple[OcpiCdr, bool]:
    """Store a CDR and hand it to checkout as the final record. Returns (cdr, created)."""
    cdr = messages.parse_cdr(data)
    same = OcpiCdr.objects.filter(
        connection=connection,
        country_code__iexact=cdr.country_code,
        party_id__iexact=cdr.party_id,
        cdr_id__iexact=cdr.id,
    )
    try:
        with transaction.atomic():
            if existing := same.first():
                return existing, False  # a repeat: the first delivery counted
            record = _match(
                connection,
                reference=cdr.authorization_reference,
                session_id=cdr.session_id,
                token_uid=cdr.token_uid,
            )
            row = OcpiCdr.objects.create(
                connection=connection,
                session=record,
                country_code=cdr.country_code,
                party_id=cdr.party_id,
                cdr_id=cdr.id,
                credit=cdr.credit,
                data=data,
            )
            if record is None or not record.reference:
                log.warning(
                    "ocpi: CDR %s from %s matches no purchase: kept for staff",
                    cdr.id,
                    connection.name,
                )
                return row, True
            deliver_update(
                SessionUpdate(
                    reference=record.reference,
                    status=SessionStatus.COMPLETED,
                    kwh=cdr.total_energy,
                    started_at=cdr.start,
                    ended_at=cdr.end,
                    measured_at=cdr.end,
                    parking_minutes=cdr.total_parking_time * Decimal(60),
                    csms_session_id=cdr.session_id or record.session_id,
                    final=True,
                    cdr=data,
                    credit=cdr.credit,
                    signed_data=cdr.signed_data,
                )
            )
            return row, True
    except IntegrityError:  # the same CDR posted twice at once: the other request stored it
        return same.get(), False
