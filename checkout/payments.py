"""The only module that talks to Stripe: a small provider around the calls we make.

The API key is passed per client (no global stripe.api_key). Errors become PaymentDeclined (the
driver can act on it) or PaymentGatewayError (ours or Stripe's trouble; retrying may help).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from urllib.parse import quote_plus

import requests
import stripe
from django.conf import settings

# Card authorisations for online payments expire after 7 days; Stripe reports the exact moment
# as capture_before where it can, and we fall back to this.
DEFAULT_AUTH_VALIDITY = timedelta(days=7)


class PaymentDeclined(Exception):
    """The card or wallet was refused; the message is safe to show the driver."""


class CardDetailsUnusable(PaymentDeclined):
    """Stripe refused the ConfirmationToken itself (unknown, expired or already used): no card was
    asked, so it is no decline; the browser must collect the card details again."""


class PaymentGatewayError(Exception):
    """Stripe failed us. Transient (5xx, 429, a timeout: retry) unless `permanent` (retrying cannot help).

    After a transient error on a write, the write may or may not have happened: callers record
    that a write is in flight and ask Stripe before writing again.
    """

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class BalanceState:
    """A balance transaction: what moved in the Stripe balance, and Stripe's fee on it (minor units)."""

    id: str
    amount: int
    fee: int
    net: int
    currency: str
    type: str = ""
    source: str = ""  # the charge (ch_...) or refund (re_...) it books
    intent: str = ""  # the source's PaymentIntent, where the source was expanded


@dataclass(frozen=True)
class ChargeState:
    id: str
    amount: int
    amount_captured: int | None = None  # absent on localstripe
    balance: BalanceState | None = None  # None until captured, or where it was not expanded


@dataclass(frozen=True)
class PayoutState:
    id: str
    amount: int
    currency: str
    status: str
    arrival_date: datetime | None = None
    automatic: bool = False  # Stripe lists the transactions of automatic payouts only


@dataclass(frozen=True)
class IntentState:
    id: str
    status: str  # Stripe's PaymentIntent status
    amount: int
    client_secret: str
    card_brand: str = ""
    card_last4: str = ""
    wallet: str = ""
    wallet_last4: str = ""  # the device account number's last 4 a phone wallet shows
    capture_before: datetime | None = None
    error_message: str = ""
    amount_received: int | None = None  # what was captured, where Stripe reports it
    charge: ChargeState | None = None  # the latest charge, where Stripe returned it


@dataclass(frozen=True)
class RefundState:
    id: str
    amount: int
    status: str
    reference: str = ""  # our Refund's id, kept in the refund's metadata
    balance: BalanceState | None = None  # where Stripe returned it expanded


# Read with every intent and refund, so a capture or refund brings its fee with it in the same call.
INTENT_EXPAND = ["latest_charge.balance_transaction"]
REFUND_EXPAND = ["balance_transaction"]


def _balance_state(txn) -> BalanceState | None:
    """A balance transaction as returned (expanded) by Stripe; None if it is only an id, or absent."""
    if not isinstance(txn, dict) or not txn.get("id"):
        return None
    amount, fee = int(txn.get("amount") or 0), int(txn.get("fee") or 0)
    net = txn.get("net")
    source = txn.get("source")
    if isinstance(source, dict):  # expanded: a charge or refund, naming its intent
        intent = source.get("payment_intent")
        source, intent = source.get("id") or "", intent if isinstance(intent, str) else ""
    else:
        source, intent = source if isinstance(source, str) else "", ""
    return BalanceState(
        id=txn["id"],
        amount=amount,
        fee=fee,
        net=int(net) if net is not None else amount - fee,
        currency=(txn.get("currency") or "").upper(),
        type=txn.get("type") or "",
        source=source,
        intent=intent,
    )


def _charge_state(charge) -> ChargeState | None:
    if not isinstance(charge, dict) or not charge.get("id"):
        return None
    captured = charge.get("amount_captured")
    return ChargeState(
        id=charge["id"],
        amount=int(charge.get("amount") or 0),
        amount_captured=int(captured) if captured is not None else None,
        balance=_balance_state(charge.get("balance_transaction")),
    )


class _Session(requests.Session):
    """A session that does not read the environment on every request.

    requests looks up the proxy variables (and ~/.netrc) for each request it sends: 6 % of the
    pay path's CPU in bench/throughput.py. The client below reads the proxy for Stripe's address
    once, when it is made, and passes it with every request instead. Stripe's answers set no
    cookies, and urllib3's pool is thread-safe: one session serves every thread of the process.
    """

    def __init__(self):
        super().__init__()
        self.trust_env = False


@lru_cache(maxsize=4)
def _client(api_key: str, api_base: str, timeout: int) -> stripe.StripeClient:
    kwargs = {"base_addresses": {"api": api_base}} if api_base else {}
    proxy = requests.utils.get_environ_proxies(api_base or stripe.DEFAULT_API_BASE) or None
    return stripe.StripeClient(
        api_key,
        http_client=stripe.RequestsClient(timeout=timeout, session=_Session(), proxy=proxy),
        max_network_retries=0,  # retries are ours (Celery), guarded by our own state
        **kwargs,
    )


def client() -> stripe.StripeClient:
    return _client(
        settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT_SECONDS
    )


def _call(fn, *args, bad_card_on_404: bool = False, **kwargs):
    try:
        return fn(*args, **kwargs)
    except stripe.CardError as exc:
        raise PaymentDeclined(exc.user_message or "Your card was declined.") from exc
    except stripe.InvalidRequestError as exc:
        if exc.param == "confirmation_token":
            raise CardDetailsUnusable(str(exc.user_message or exc)) from exc
        if exc.param == "payment_method" or (bad_card_on_404 and exc.http_status == 404):
            # What the browser sent is not a usable card: the driver can fix that, we cannot.
            raise PaymentDeclined(
                "The card details could not be used. Please enter them again."
            ) from exc
        # A request Stripe refuses (a capture of a canceled intent, an amount too large) is refused again.
        raise PaymentGatewayError(
            str(exc), permanent=exc.http_status in (400, 402, 404, 409)
        ) from exc
    except (stripe.AuthenticationError, stripe.PermissionError, stripe.IdempotencyError) as exc:
        raise PaymentGatewayError(str(exc) or exc.__class__.__name__, permanent=True) from exc
    except stripe.StripeError as exc:  # 5xx, 429, connection errors and timeouts
        raise PaymentGatewayError(str(exc) or exc.__class__.__name__) from exc


def _request(method: str, path: str, params: dict | None = None, *, idempotency_key: str = ""):
    """One call to Stripe on the money path, its answer as the parsed JSON (a dict). The same
    request, errors and options as the client's services (client().v1...), which would also make a
    StripeObject of every object nested in the answer, only for _state to turn it back into a
    dict: about 40 % of an intent call's CPU (2.2 -> 1.3 ms against localstripe)."""
    options = {"idempotency_key": idempotency_key} if idempotency_key else {}
    return client().raw_request(method, path, **(params or {}), **options).data


def _path(template: str, object_id: str) -> str:
    return template.format(quote_plus(object_id))  # as the client's services quote an id


@lru_cache(maxsize=256)
def _payment_method(payment_method_id: str) -> dict:
    """A PaymentMethod (or legacy Card). Its card details never change, so the read the abuse limits
    make before the intent (the fingerprint) also serves the brand and last 4 after it."""
    return _call(_request, "get", _path("/v1/payment_methods/{}", payment_method_id))


def card_fingerprint(payment_method_id: str) -> str:
    """The card's fingerprint (the same card number gives the same one), or '' where there is none:
    a wallet token without one, an unknown id, or Stripe not answering (create then says why)."""
    try:
        pm = _payment_method(payment_method_id)
    except (PaymentDeclined, PaymentGatewayError):
        return ""
    card = pm if pm.get("object") == "card" else (pm.get("card") or {})
    return card.get("fingerprint") or ""


def token_card_fingerprint(confirmation_token: str) -> str:
    """The fingerprint of the card a ConfirmationToken carries (its payment_method_preview), or ''.

    Not cached: a token's state changes when it is used, and each press of Pay brings a new one."""
    try:
        token = _call(_request, "get", _path("/v1/confirmation_tokens/{}", confirmation_token))
    except (PaymentDeclined, PaymentGatewayError):
        return ""
    card = (token.get("payment_method_preview") or {}).get("card") or {}
    return card.get("fingerprint") or ""


def _state(pi: dict, *, card: bool = True) -> IntentState:
    """Our view of a PaymentIntent. `card=False` skips looking up the card (brand, last 4, wallet),
    which only matters while authorising: a capture or cancel then costs one Stripe call, not two."""
    capture_before = None
    pm = pi.get("payment_method") if card else None
    if isinstance(pm, str) and pm:
        pm = _payment_method(pm)
    pm = pm or {}
    # A PaymentMethod nests the card; a legacy Card object (card_...) is the card.
    card = pm if pm.get("object") == "card" else (pm.get("card") or {})
    brand, last4 = card.get("brand") or "", card.get("last4") or ""
    wallet = ((card.get("wallet") or {}).get("type")) or ""
    # Stripe puts it in card.wallet (a legacy Card has it at the top); localstripe sends None there.
    wallet_last4 = (card.get("wallet") or {}).get("dynamic_last4") or card.get("dynamic_last4")
    charge = pi.get("latest_charge")
    if isinstance(charge, dict):
        details = (charge.get("payment_method_details") or {}).get("card") or {}
        wallet_last4 = wallet_last4 or (details.get("wallet") or {}).get("dynamic_last4")
        if details.get("capture_before"):
            capture_before = datetime.fromtimestamp(details["capture_before"], tz=UTC)
    if capture_before is None and pi.get("status") == "requires_capture":
        capture_before = datetime.fromtimestamp(pi["created"], tz=UTC) + DEFAULT_AUTH_VALIDITY
    error = (pi.get("last_payment_error") or {}).get("message") or ""
    received = pi.get("amount_received")
    return IntentState(
        id=pi["id"],
        status=pi["status"],
        amount=int(pi["amount"]),
        client_secret=pi.get("client_secret") or "",
        card_brand=brand,
        card_last4=last4,
        wallet=wallet,
        wallet_last4=wallet_last4 if isinstance(wallet_last4, str) else "",
        capture_before=capture_before,
        error_message=error,
        amount_received=int(received) if received is not None else None,
        charge=_charge_state(charge),
    )


def create(
    *,
    amount: int,
    currency: str,
    metadata: dict,
    idempotency_key: str,
    payment_method: str = "",
    radar_session: str = "",
) -> IntentState:
    """Create a PaymentIntent that will only hold the amount. Nothing is held until confirm().

    `payment_method`: the card of the embedded default (localstripe's card element); production
    brings a ConfirmationToken instead, which confirm() passes (the intent then has no payment
    method until it is confirmed).
    `radar_session`: Stripe.js's snapshot of the browser (createRadarSession), for Radar's scoring."""
    params = {
        "amount": amount,
        "currency": currency.lower(),
        "capture_method": "manual",  # as the browser's Elements say (captureMethod: "manual")
        "metadata": metadata,
        "payment_method_types": ["card"],  # cards, Apple Pay and Google Pay
    }
    if payment_method:
        params["payment_method"] = payment_method
    if radar_session and not settings.STRIPE_API_BASE:
        params["radar_options"] = {"session": radar_session}  # localstripe refuses the parameter
    pi = _call(
        _request,
        "post",
        "/v1/payment_intents",
        params=params,
        idempotency_key=idempotency_key,
        bad_card_on_404=True,  # the only thing create refers to that can be missing is the payment method
    )
    return _state(pi)


def confirm(
    payment_intent_id: str, *, return_url: str, idempotency_key: str, confirmation_token: str = ""
) -> IntentState:
    """Ask the card issuer for the hold (server-side confirmation), with the browser's
    ConfirmationToken where it sent one (Stripe then writes the token's payment method onto the
    intent; the token is single-use)."""
    # Stripe wants to know where 3-D Secure returns to; localstripe's own confirm (a payment
    # method's intent) refuses any parameter, its ConfirmationToken stand-in takes it as Stripe does.
    params = {"return_url": return_url}
    if confirmation_token:
        params["confirmation_token"] = confirmation_token
    elif settings.STRIPE_API_BASE:
        params = {}
    pi = _call(
        _request,
        "post",
        _path("/v1/payment_intents/{}/confirm", payment_intent_id),
        params=params,
        idempotency_key=idempotency_key,
    )
    return _state(pi)


def retrieve(payment_intent_id: str, *, card: bool = True) -> IntentState:
    return _state(
        _call(
            _request,
            "get",
            _path("/v1/payment_intents/{}", payment_intent_id),
            params={"expand": INTENT_EXPAND},
        ),
        card=card,
    )


def capture(payment_intent_id: str, *, amount: int, idempotency_key: str) -> IntentState:
    pi = _call(
        _request,
        "post",
        _path("/v1/payment_intents/{}/capture", payment_intent_id),
        params={"amount_to_capture": amount, "expand": INTENT_EXPAND},
        idempotency_key=idempotency_key,
    )
    return _state(pi, card=False)


def cancel(payment_intent_id: str, *, idempotency_key: str) -> IntentState:
    pi = _call(
        _request,
        "post",
        _path("/v1/payment_intents/{}/cancel", payment_intent_id),
        idempotency_key=idempotency_key,
    )
    return _state(pi, card=False)


def _refund_state(obj) -> RefundState:
    refund = obj.to_dict()
    return RefundState(
        id=refund["id"],
        amount=int(refund["amount"]),
        status=refund.get("status") or "",
        reference=(refund.get("metadata") or {}).get("refund", ""),
        balance=_balance_state(refund.get("balance_transaction")),
    )


def refund(
    payment_intent_id: str, *, amount: int, reference: str, reason: str, idempotency_key: str
) -> RefundState:
    """Give back part or all of a captured amount. `reference` (our Refund id) goes into metadata."""
    params = {
        "payment_intent": payment_intent_id,
        "amount": amount,
        "metadata": {"refund": reference},
        "expand": REFUND_EXPAND,
    }
    if not settings.STRIPE_API_BASE and reason in (
        "duplicate",
        "fraudulent",
        "requested_by_customer",
    ):
        params["reason"] = reason  # localstripe refuses the parameter; Stripe knows these three
    return _refund_state(
        _call(
            client().v1.refunds.create, params=params, options={"idempotency_key": idempotency_key}
        )
    )


def _pages(list_fn, params: dict):
    """Every object of a Stripe list, one page (100) at a time: a long list is never held whole."""
    after = None
    while True:
        page = _call(
            list_fn, params={**params, "limit": 100, **({"starting_after": after} if after else {})}
        )
        yield from page.data
        if not page.has_more or not page.data:
            return
        after = page.data[-1]["id"]


def refunds(payment_intent_id: str) -> list[RefundState]:
    """Every refund of the intent, ours and others (Stripe's dashboard), newest first."""
    params = {
        "payment_intent": payment_intent_id,
        "expand": [f"data.{path}" for path in REFUND_EXPAND],
    }
    return [_refund_state(r) for r in _pages(client().v1.refunds.list, params)]


def balance_transaction(txn_id: str) -> BalanceState:
    """One entry of the balance history (GET /v1/balance_transactions/txn_...)."""
    return _balance_state(_call(client().v1.balance_transactions.retrieve, txn_id).to_dict())


def payout(payout_id: str) -> PayoutState:
    po = _call(client().v1.payouts.retrieve, payout_id).to_dict()
    arrival = po.get("arrival_date")
    return PayoutState(
        id=po["id"],
        amount=int(po.get("amount") or 0),
        currency=(po.get("currency") or "").upper(),
        status=po.get("status") or "",
        arrival_date=datetime.fromtimestamp(arrival, tz=UTC) if arrival else None,
        automatic=bool(po.get("automatic")),
    )


def payout_transactions(payout_id: str):
    """The balance transactions a payout paid out (charges, refunds, fees...), page by page.

    Stripe: GET /v1/balance_transactions?payout=po_... (automatic payouts only). Each one's source
    is expanded so a charge or refund is matched to its intent even if we never stored its ids.
    localstripe refuses the `payout` filter (400): a PaymentGatewayError, permanent."""
    params = {"payout": payout_id, "expand": ["data.source"]}
    for txn in _pages(client().v1.balance_transactions.list, params):
        state = _balance_state(txn.to_dict())
        if state is not None:
            yield state


WALLETS = ("apple_pay", "google_pay")


@dataclass(frozen=True)
class WalletDomain:
    """A domain registered with Stripe (PaymentMethodDomain) and what each wallet says of it."""

    id: str
    domain: str
    enabled: bool
    created: bool  # registered now (False: it was registered before and has been validated again)
    wallets: dict  # wallet -> (status, Stripe's reason when inactive)

    @property
    def ready(self) -> bool:
        return self.enabled and all(status == "active" for status, _ in self.wallets.values())


def register_domain(domain_name: str) -> WalletDomain:
    """Register a domain for Apple Pay and Google Pay, or validate it again if it already is.

    Stripe shows a wallet in Elements only on a registered domain whose wallet status is active;
    validating again is how a domain that failed (Apple's association file missing) is retried.
    """
    domains = client().v1.payment_method_domains
    listed = _call(domains.list, params={"domain_name": domain_name, "limit": 1})
    existing = next((d for d in listed.data if d["domain_name"] == domain_name), None)
    if existing is None:
        obj = _call(domains.create, params={"domain_name": domain_name}).to_dict()
    else:
        obj = _call(domains.validate, existing["id"]).to_dict()
    wallets = {}
    for wallet in WALLETS:
        info = obj.get(wallet) or {}
        details = info.get("status_details") or {}
        wallets[wallet] = (info.get("status", "unknown"), details.get("error_message", ""))
    return WalletDomain(
        id=obj["id"],
        domain=obj["domain_name"],
        enabled=bool(obj.get("enabled")),
        created=existing is None,
        wallets=wallets,
    )


def verify_webhook(payload: bytes, signature: str) -> dict:
    """Check a webhook's signature; raise ValueError if it is not Stripe's (or localstripe's)."""
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode(), signature, settings.STRIPE_WEBHOOK_SECRET
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise ValueError("bad signature") from exc
    return json.loads(payload)
