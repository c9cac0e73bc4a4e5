"""What the browser may load and use: the Content-Security-Policy and Permissions-Policy values.

Plain functions of the Stripe settings, called from settings.py, so the policy in the header is the
one the checkout page's script needs: Stripe's origins in production, the localstripe that serves
the shim in the embedded default and the tests.
"""

from urllib.parse import urlsplit

from csp.constants import NONE, SELF

# From Stripe's integration security guide (Content Security Policy section).
STRIPE_SCRIPT = ["https://js.stripe.com", "https://*.js.stripe.com"]
STRIPE_FRAME = [
    "https://js.stripe.com",
    "https://*.js.stripe.com",
    "https://hooks.stripe.com",  # 3-D Secure challenges
    "https://m.stripe.network",  # fraud signals
]
STRIPE_CONNECT = ["https://api.stripe.com", "https://m.stripe.network"]
STRIPE_IMG = ["https://*.stripe.com"]
STRIPE_PAYMENT = ["https://js.stripe.com", "https://*.js.stripe.com"]

# Denied to every page: nothing here films, listens, locates or talks to devices.
DENIED_FEATURES = (
    "accelerometer",
    "autoplay",
    "camera",
    "display-capture",
    "geolocation",
    "gyroscope",
    "hid",
    "magnetometer",
    "microphone",
    "midi",
    "serial",
    "usb",
    "xr-spatial-tracking",
)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def stripe_is_real(stripe_js_url: str) -> bool:
    return origin(stripe_js_url) == "https://js.stripe.com"


def directives(stripe_js_url: str, stripe_api_base: str, extra_script: list | None = None) -> dict:
    """The CSP directives. `extra_script` is where a CAPTCHA (e.g. Turnstile's
    https://challenges.cloudflare.com, for script-src and frame-src) goes when it is turned on."""
    if stripe_is_real(stripe_js_url):
        script, frame, connect, img = STRIPE_SCRIPT, STRIPE_FRAME, STRIPE_CONNECT, STRIPE_IMG
    else:
        # localstripe: its shim is served from, and calls back to, the origin it was loaded from.
        stand_in = sorted({o for o in (origin(stripe_js_url), origin(stripe_api_base)) if o})
        script, frame, connect, img = stand_in, stand_in, stand_in, []
    extra = list(extra_script or [])
    return {
        "default-src": [SELF],
        "script-src": [SELF, *script, *extra],
        "frame-src": [*frame, *extra] or [NONE],
        "connect-src": [SELF, *connect],
        "img-src": [SELF, "data:", *img],
        "style-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }


def permissions_policy(stripe_js_url: str) -> str:
    """Permissions-Policy header value: `payment` (Payment Request API, behind Apple Pay and
    Google Pay in Stripe's Express Checkout frames) for us and Stripe; the rest denied."""
    payment = ["self", *(f'"{o}"' for o in STRIPE_PAYMENT)]
    if not stripe_is_real(stripe_js_url) and origin(stripe_js_url):
        payment.append(f'"{origin(stripe_js_url)}"')
    denied = ", ".join(f"{feature}=()" for feature in DENIED_FEATURES)
    return f"{denied}, payment=({' '.join(payment)})"
