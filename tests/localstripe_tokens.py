"""localstripe with Stripe's ConfirmationToken, for the production checkout path.

In production Stripe.js turns what the driver entered into a ConfirmationToken
(`stripe.createConfirmationToken`) and the server confirms the PaymentIntent with it. localstripe
1.15 has no such resource; `install()` adds it in this process (no installed file is changed),
after Stripe's API reference (docs.stripe.com/api/confirmation_tokens):

- `POST /v1/test_helpers/confirmation_tokens` ("Create a test Confirmation Token"): from
  `payment_method` (an existing one, or a test id such as pm_card_visa) or `payment_method_data`
  (`type=card` and the card), plus `return_url`, `setup_future_usage`, `shipping`.
- `GET /v1/confirmation_tokens/{id}`: object "confirmation_token", `payment_method_preview` (the
  card: brand, last4, fingerprint...), `expires_at`, `payment_intent` (null until used),
  `use_stripe_sdk`, ...
- `confirmation_token` on PaymentIntent confirm, and on create with `confirm=true` ("you can also
  provide the parameters available in the Confirm API"): the intent takes the token's payment
  method. A token confirms one intent, before it expires; otherwise Stripe's error shape
  (`invalid_request_error`, `param: confirmation_token`; 404 `resource_missing` for an unknown id).
- `POST /_config/confirmation_tokens` (`lifetime`, seconds): how long the next tokens live, so a
  test can see an expired one. Stripe's reference example expires a token 12 h after creation.

Run it as localstripe is run:  python tests/localstripe_tokens.py --port 8420 --from-scratch
"""

import time

from aiohttp import web
from localstripe import resources
from localstripe.errors import UserError
from localstripe.resources import PaymentIntent, PaymentMethod, StripeObject, try_convert_to_bool

LIFETIME = {"seconds": 12 * 3600}


def _token_error(status: int, message: str, code: str | None = None) -> UserError:
    contents = {"param": "confirmation_token"}
    if code:
        contents["code"] = code
    return UserError(status, message, contents)


class ConfirmationToken(StripeObject):
    object = "confirmation_token"
    _id_prefix = "ctoken_"

    def __init__(
        self,
        payment_method=None,
        payment_method_data=None,
        payment_method_options=None,
        return_url=None,
        setup_future_usage=None,
        shipping=None,
        **kwargs,
    ):
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        if (payment_method is None) == (payment_method_data is None):
            raise UserError(400, "You must provide either payment_method or payment_method_data")
        if setup_future_usage not in (None, "off_session", "on_session"):
            raise UserError(400, "Invalid setup_future_usage", {"param": "setup_future_usage"})
        if payment_method is not None:
            if not isinstance(payment_method, str):
                raise UserError(400, "Bad request", {"param": "payment_method"})
            pm = PaymentMethod._api_retrieve(payment_method)  # 404 if unknown
        else:
            if not isinstance(payment_method_data, dict) or "type" not in payment_method_data:
                raise UserError(
                    400,
                    "Missing required param: payment_method_data[type].",
                    {"param": "payment_method_data[type]"},
                )
            # Stripe makes the PaymentMethod when an intent is confirmed with the token; it is made
            # here (kept private) so that the card is checked now, as Stripe.js checks it.
            pm = PaymentMethod(**payment_method_data)

        # All exceptions must be raised before this point.
        super().__init__()
        self.expires_at = self.created + LIFETIME["seconds"]
        self.mandate_data = None
        self.payment_intent = None
        self.payment_method_options = payment_method_options
        self.return_url = return_url
        self.setup_future_usage = setup_future_usage
        self.setup_intent = None
        self.shipping = shipping
        self.use_stripe_sdk = True
        self._payment_method = pm.id

    @property
    def payment_method_preview(self):
        """The PaymentMethod's details without its id (a preview, as Stripe shows it)."""
        pm = PaymentMethod._api_retrieve(self._payment_method)
        if isinstance(pm, PaymentMethod):
            details = {"type": pm.type, pm.type: dict(getattr(pm, pm.type))}
            billing = pm.billing_details
        else:  # a legacy Card (card_...) given as payment_method
            card = {
                k: getattr(pm, k, None)
                for k in (
                    "brand",
                    "country",
                    "exp_month",
                    "exp_year",
                    "fingerprint",
                    "funding",
                    "last4",
                )
            }
            details, billing = {"type": "card", "card": card}, {}
        empty = {
            "city": None,
            "country": None,
            "line1": None,
            "line2": None,
            "postal_code": None,
            "state": None,
        }
        return {
            "allow_redisplay": "unspecified",
            "billing_details": {
                "address": {**empty, **(billing.get("address") or {})},
                "email": billing.get("email"),
                "name": billing.get("name"),
                "phone": billing.get("phone"),
            },
            "customer": None,
            **details,
        }

    @classmethod
    def _use(cls, id, intent) -> str:
        """Spend the token on `intent`: its payment method's id, or Stripe's refusal."""
        if not isinstance(id, str) or not id:
            raise _token_error(400, "Invalid confirmation_token.")
        obj = resources.store.get(cls.object + ":" + id)
        if obj is None:
            raise _token_error(404, f"No such ConfirmationToken: '{id}'", "resource_missing")
        if obj.payment_intent is not None or obj.setup_intent is not None:
            raise _token_error(
                400,
                "This ConfirmationToken has already been used to confirm a "
                "PaymentIntent or SetupIntent; create a new one.",
            )
        if time.time() >= obj.expires_at:
            raise _token_error(400, "This ConfirmationToken has expired; create a new one.")
        obj.payment_intent = intent.id
        resources.store[cls.object + ":" + id] = obj  # saved as localstripe saves a write
        return obj._payment_method


_original_create = PaymentIntent._api_create.__func__


def _intent_create(cls, confirm=None, confirmation_token=None, **data):
    if confirmation_token is None:
        return _original_create(cls, confirm=confirm, **data)
    if try_convert_to_bool(confirm) is not True:
        raise _token_error(400, "confirmation_token can only be used when confirm is true.")
    data.pop("return_url", None)  # a Confirm API parameter; 3-D Secure here needs no redirect
    obj = _original_create(cls, confirm=False, **data)
    _confirm_with_token(obj, confirmation_token)
    return obj


def _intent_confirm(id, confirmation_token=None, return_url=None, **kwargs):
    if confirmation_token is None:
        if return_url is not None:
            kwargs["return_url"] = return_url  # refused by localstripe, as before
        return PaymentIntent._localstripe_confirm(id, **kwargs)
    if kwargs:
        raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    if not (isinstance(id, str) and id.startswith("pi_")):
        raise UserError(400, "Bad request")
    obj = PaymentIntent._api_retrieve(id)
    if obj.status not in ("requires_payment_method", "requires_confirmation"):
        raise UserError(
            400,
            f"You cannot confirm this PaymentIntent because it has a status of {obj.status}.",
            {"code": "payment_intent_unexpected_state"},
        )
    _confirm_with_token(obj, confirmation_token)
    return obj


def _confirm_with_token(intent, token_id):
    # The intent is checked first, so a confirm it refuses does not spend the token.
    intent.payment_method = ConfirmationToken._use(token_id, intent)
    intent.latest_charge = None  # a new attempt, after a decline
    intent._confirm(on_failure_now=intent._report_failure)


_original_dump = resources.Store.dump_to_disk


def _dump_without_tokens(self) -> None:
    """localstripe's store file is shared by any localstripe on this machine, which could not load
    a class only this process knows: tokens (short-lived anyway) stay out of it."""
    prefix = ConfirmationToken.object + ":"
    _original_dump(resources.Store({k: v for k, v in self.items() if not k.startswith(prefix)}))


def install() -> None:
    """Patch localstripe's classes and routes. Call before localstripe.server is imported."""
    if getattr(PaymentIntent, "_localstripe_confirm", None):
        return
    resources.Store.dump_to_disk = _dump_without_tokens
    PaymentIntent._localstripe_confirm = PaymentIntent._api_confirm
    PaymentIntent._api_create = classmethod(_intent_create)
    resources.extra_apis[:] = [
        (method, url, _intent_confirm if url == "/v1/payment_intents/{id}/confirm" else func)
        for method, url, func in resources.extra_apis
    ]
    from localstripe import server  # registers extra_apis as they now are

    server.app.router.add_route(
        "POST",
        "/v1/test_helpers/confirmation_tokens",
        server.api_create(ConfirmationToken, "/v1/test_helpers/confirmation_tokens"),
    )
    server.app.router.add_route(
        "GET",
        "/v1/confirmation_tokens/{id}",
        server.api_retrieve(ConfirmationToken, "/v1/confirmation_tokens/{id}"),
    )

    async def config_lifetime(request):
        data = await server.get_post_data(request) or {}
        try:
            LIFETIME["seconds"] = int(data.get("lifetime"))
        except (TypeError, ValueError):
            raise UserError(400, "Bad request") from None
        return web.Response()

    server.app.router.add_post("/_config/confirmation_tokens", config_lifetime)


if __name__ == "__main__":
    install()
    from localstripe import server

    server.start()
