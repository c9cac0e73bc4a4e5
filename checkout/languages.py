"""Which language a driver's page speaks: the driver's wish, among those the operator offers.

LocaleMiddleware has already picked from the switch's cookie or Accept-Language among all of
LANGUAGES; an operator may offer fewer (Operator.page_languages, its default first), so pages
that belong to an operator choose again here and activate the result for the rest of the request
(the response's Content-Language follows, and Pay stores it on the session for the receipt).
"""

from django.conf import settings
from django.db.models import Q
from django.utils import translation
from django.utils.translation.trans_real import parse_accept_lang_header

from stations.models import page_language_codes


def offered(operator=None) -> list[str]:
    """Language codes the pages offer, the default first."""
    known = [code for code, _name in settings.LANGUAGES]
    wanted = (
        [c for c in page_language_codes(operator.page_languages) if c in known] if operator else []
    )
    if wanted:
        return wanted
    return sorted(known, key=lambda code: code != settings.LANGUAGE_CODE)


def _wishes(request):
    yield request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
    for code, _q in parse_accept_lang_header(request.headers.get("Accept-Language", "")):
        yield code


def choose(request, operator=None) -> str:
    codes = offered(operator)
    for wish in _wishes(request):
        if not wish or wish == "*":
            continue
        try:
            code = translation.get_supported_language_variant(wish)
        except LookupError:
            continue
        if code in codes:
            return code
    return codes[0]


def activate_for(request, operator=None, *, next_url=None) -> dict:
    """Activate the page's language; the context the language switch in base.html needs.

    next_url: where the switch returns to (default: this page); a page answering a POST gives
    the page to go back to instead.
    """
    code = choose(request, operator)
    translation.activate(code)
    request.LANGUAGE_CODE = code
    names = dict(settings.LANGUAGES)
    return {
        "page_languages": [(c, names[c]) for c in offered(operator)],
        "language_next": next_url or request.get_full_path(),
    }


def remember(session, code: str) -> None:
    """The payer's page now speaks `code`: the receipt, credit notes and e-mail not made yet will too.

    Only the session's language changes (one column, no state): a PDF already rendered stays as it is.
    """
    if code and session.language != code:
        # Conditional, so two tabs switching at once leave the last word and no lost update elsewhere.
        type(session).objects.filter(Q(pk=session.pk) & ~Q(language=code)).update(language=code)
        session.language = code
