"""The driver's languages: complete catalogues, the language each page picks, the switch, the operator's
choice, and the answers, documents and e-mails that follow the page's language.

The catalogue test extracts the strings from the sources itself (directpay/catalogues.py, the same
extractor `make makemessages` uses), so a string added without a translation fails it.
"""

import re
import shutil
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse

from checkout import receipts, services
from checkout.models import ChargingSession
from directpay import catalogues
from stations import qr
from tests.factories import ConnectorFactory, OperatorFactory

DECLINED = "4000000000000341"

# A phrase of the checkout page in each language (the hold's heading).
HOLD_HEADING = {
    "en": "Amount to hold",
    "nl": "Te reserveren bedrag",
    "de": "Zu reservierender Betrag",
    "fr": "Montant à bloquer",
}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def catalogue_problems(root: Path) -> list[str]:
    """Every string of the driver's sources that a catalogue lacks, leaves empty or marks fuzzy."""
    problems = []
    for domain in catalogues.DRIVER_SOURCES:
        wanted = catalogues.extract_messages(domain, root)
        for lang in catalogues.TRANSLATED:
            path = root / "locale" / lang / "LC_MESSAGES" / f"{domain}.po"
            if not path.exists():
                problems.append(f"{lang}/{domain}: no catalogue")
                continue
            with path.open("rb") as f:
                catalog = read_po(f, locale=lang, domain=domain)
            for message in catalog:
                if message.id and message.fuzzy:
                    problems.append(f"{lang}/{domain}: fuzzy {message.id!r}")
            for message in wanted:
                if not message.id:
                    continue
                found = catalog.get(message.id, context=message.context)
                where = f"{lang}/{domain}: {message.id!r} ({message.locations[0][0]})"
                if found is None:
                    problems.append(f"{where} missing")
                    continue
                forms = found.string if isinstance(found.string, tuple) else (found.string,)
                if not all(forms):
                    problems.append(f"{where} untranslated")
                    continue
                ids = message.id if isinstance(message.id, tuple) else (message.id,)
                if any(
                    set(PLACEHOLDER.findall(f)) != set(PLACEHOLDER.findall(ids[0])) for f in forms
                ):
                    problems.append(f"{where} placeholders differ")
    return problems


def test_every_driver_string_is_translated_in_every_catalogue():
    # The extractor sees every kind of source: a template, an e-mail, a script, both documents.
    where = {
        path
        for domain in catalogues.DRIVER_SOURCES
        for message in catalogues.extract_messages(domain)
        for path, _line in message.locations
    }
    for source in [
        "templates/404.html",
        "templates/500.html",
        "templates/checkout/checkout.html",
        "templates/checkout/status.html",
        "templates/checkout/too_many.html",
        "templates/checkout/invalid_code.html",
        "templates/emails/receipt.txt",
        "static/js/checkout.js",
        "static/js/status.js",
        "checkout/receipts.py",
        "checkout/credit_notes.py",
        "checkout/views.py",
        "checkout/services.py",
    ]:
        assert source in where, source
    assert catalogue_problems(catalogues.ROOT) == []


def test_a_new_string_without_translation_fails_the_catalogue_test(tmp_path):
    shutil.copytree(catalogues.ROOT / "locale", tmp_path / "locale")
    (tmp_path / "templates" / "checkout").mkdir(parents=True)
    (tmp_path / "templates" / "checkout" / "new.html").write_text(
        '{% load i18n %}{% translate "Plug in your car" %}'
    )
    (tmp_path / "static" / "js").mkdir(parents=True)
    (tmp_path / "static" / "js" / "new.js").write_text('alert(gettext("The car is full."));')
    problems = catalogue_problems(tmp_path)
    for lang in catalogues.TRANSLATED:
        assert (
            f"{lang}/django: 'Plug in your car' (templates/checkout/new.html) missing" in problems
        )
        assert f"{lang}/djangojs: 'The car is full.' (static/js/new.js) missing" in problems

    # A fuzzy (guessed) entry counts as not translated.
    po = tmp_path / "locale" / "de" / "LC_MESSAGES" / "djangojs.po"
    text = po.read_text()
    po.write_text(text.replace('msgid "The card details', '#, fuzzy\nmsgid "The card details', 1))
    assert any(p.startswith("de/djangojs: fuzzy") for p in catalogue_problems(tmp_path))


# --- pages ---------------------------------------------------------------------------------------


@pytest.fixture
def evse(db, stripe):
    return ConnectorFactory().evse


def scan_path(evse):
    return reverse("checkout:scan", args=[qr.code_for(evse)])


def assert_speaks(response, lang):
    html = response.content.decode()
    assert f'<html lang="{lang}">' in html
    assert response["Content-Language"] == lang
    return html


@pytest.mark.parametrize("lang", ["de", "nl", "fr", "en"])
def test_the_checkout_page_speaks_the_browsers_language(client, evse, lang):
    response = client.get(scan_path(evse), HTTP_ACCEPT_LANGUAGE=f"{lang}-XX,{lang};q=0.9,en;q=0.5")
    html = assert_speaks(response, lang)
    assert HOLD_HEADING[lang] in html
    # The script's strings in the same language, from our own origin.
    assert f'src="/jsi18n/{lang}/"' in html


def test_the_invalid_code_page_and_status_page_follow_too(client, evse, pay):
    html = assert_speaks(client.get("/q/not-a-code", HTTP_ACCEPT_LANGUAGE="fr"), "fr")
    assert "Ce code n'est pas valide" in html
    session = pay(evse.connectors.get())
    status = reverse("checkout:status", args=[session.public_id])
    html = assert_speaks(client.get(status, HTTP_ACCEPT_LANGUAGE="de"), "de")
    assert "Auf Ihrer Karte reserviert" in html
    # The live figures the script swaps in are numbers of the page's language.
    ChargingSession.objects.filter(pk=session.pk).update(kwh="1.5", cost_incl_vat="0.75")
    answer = client.get(
        reverse("checkout:status_json", args=[session.public_id]), HTTP_ACCEPT_LANGUAGE="de"
    ).json()
    assert (answer["kwh"], answer["cost"]) == (
        "1,500",
        "0,75",
    )  # kWh with 3 decimals, as everywhere (checkout.energy)


def test_a_page_not_found_speaks_the_browsers_language(client, db):
    response = client.get("/s/00000000-0000-0000-0000-000000000000/", HTTP_ACCEPT_LANGUAGE="de")
    assert response.status_code == 404
    html = assert_speaks(response, "de")
    assert "Seite nicht gefunden" in html and "Hier wurde nichts abgebucht." in html


def test_a_failed_session_shows_its_reason_in_the_drivers_language(client, evse, pay):
    session = pay(evse.connectors.get(), card=DECLINED)  # declined
    assert session.failure_reason == services.DECLINED  # English for staff
    status = reverse("checkout:status", args=[session.public_id])
    html = assert_speaks(client.get(status, HTTP_ACCEPT_LANGUAGE="nl"), "nl")
    assert "Uw kaart is geweigerd." in html and "Niet gestart" in html
    assert services.DECLINED not in html


def test_the_switch_sets_the_language_and_returns_to_the_same_page(client, evse):
    path = scan_path(evse)
    html = assert_speaks(client.get(path, HTTP_ACCEPT_LANGUAGE="de"), "de")
    assert f'name="next" value="{path}"' in html
    assert 'value="nl" lang="nl">Nederlands</button>' in html
    response = client.post(reverse("set_language"), {"language": "nl", "next": path})
    assert response.status_code == 302 and response["Location"] == path
    html = assert_speaks(client.get(path, HTTP_ACCEPT_LANGUAGE="de"), "nl")
    assert HOLD_HEADING["nl"] in html


def test_pay_stores_the_pages_language_for_the_receipt(client, evse, stripe):
    connector = evse.connectors.get()
    client.post(reverse("set_language"), {"language": "fr", "next": "/"})
    response = client.post(
        reverse("checkout:pay", args=[qr.code_for(evse)]),
        {
            "connector": connector.pk,
            "hold_amount": 2000,
            "price": connector.tariff.price_digest,
            "payment_method": stripe.card_token(DECLINED),
        },
        HTTP_ACCEPT_LANGUAGE="de",
    )
    assert response.status_code == 402
    assert response.json()["message"].startswith("Votre carte a été refusée.")
    assert ChargingSession.objects.get(evse=evse).language == "fr"


def test_the_payers_switch_on_the_status_page_is_remembered_for_the_receipt(client, evse, stripe):
    connector = evse.connectors.get()
    response = client.post(
        reverse("checkout:pay", args=[qr.code_for(evse)]),
        {
            "connector": connector.pk,
            "hold_amount": 2000,
            "price": connector.tariff.price_digest,
            "payment_method": stripe.card_token("4242424242424242"),
        },
        HTTP_ACCEPT_LANGUAGE="fr",
    )
    assert response.status_code == 200, response.content
    session = ChargingSession.objects.get(evse=evse)
    assert session.language == "fr"
    status = reverse("checkout:status", args=[session.public_id])
    # Someone else with the link and another language changes nothing.
    other = type(client)()
    assert_speaks(other.get(status, HTTP_ACCEPT_LANGUAGE="nl"), "nl")
    session.refresh_from_db()
    assert session.language == "fr"
    response = client.post(reverse("set_language"), {"language": "de", "next": status})
    assert response["Location"] == status
    assert_speaks(client.get(status), "de")
    session.refresh_from_db()
    assert session.language == "de"


def test_a_form_error_is_in_the_pages_language(client, evse):
    response = client.post(
        reverse("checkout:pay", args=[qr.code_for(evse)]),
        {"connector": evse.connectors.get().pk, "hold_amount": 2000},
        HTTP_ACCEPT_LANGUAGE="de",
    )
    assert response.status_code == 400
    assert response.json()["message"] == (
        "Diese Seite ist veraltet. Laden Sie sie neu, um den aktuellen Preis zu sehen. "
        "Es wurde nichts abgebucht."
    )


@pytest.mark.parametrize("offered", ["nl,en", "en,nl"])
def test_an_operator_offers_its_own_languages_and_default(client, db, stripe, offered):
    evse = ConnectorFactory(evse__location__operator__page_languages=offered).evse
    path = scan_path(evse)
    default = offered.split(",")[0]
    assert_speaks(client.get(path, HTTP_ACCEPT_LANGUAGE="nl"), "nl")
    html = assert_speaks(client.get(path, HTTP_ACCEPT_LANGUAGE="fr"), default)
    assert HOLD_HEADING[default] in html
    # The switch offers only what the operator offers; a cookie for another language is ignored.
    assert 'value="en"' in html and 'value="de"' not in html and 'value="fr"' not in html
    client.post(reverse("set_language"), {"language": "de", "next": path})
    assert_speaks(client.get(path, HTTP_ACCEPT_LANGUAGE="fr"), default)


def test_the_operators_languages_are_validated(db):
    operator = OperatorFactory(page_languages="nl,es")
    with pytest.raises(ValidationError, match="es"):
        operator.full_clean()
    operator.page_languages = "de, en"
    operator.languages = "it"
    with pytest.raises(ValidationError, match="it"):
        operator.full_clean()
    operator.languages = "de,fr"
    operator.full_clean()


def test_the_429_page_speaks_the_pages_language(client, evse, stripe, settings):
    settings.PAY_RATE_PER_IP = "1/h"
    settings.PAY_RATE_PER_EVSE = settings.PAY_RATE_PER_CARD = ""
    settings.PAY_DECLINES_PER_EVSE = settings.PAY_DECLINES_SPIKE_TOTAL = ""
    connector = evse.connectors.get()

    def pay(**headers):
        data = {
            "connector": connector.pk,
            "hold_amount": 2000,
            "price": connector.tariff.price_digest,
            "payment_method": stripe.card_token(DECLINED),
        }
        url = reverse("checkout:pay", args=[qr.code_for(evse)])
        return client.post(url, data, HTTP_ACCEPT_LANGUAGE="nl", **headers)

    assert pay().status_code == 402
    refused = pay()
    assert refused.status_code == 429 and "Te veel betaalpogingen" in refused.json()["message"]
    page = pay(HTTP_ACCEPT="text/html")
    html = assert_speaks(page, "nl")
    assert "Te veel betaalpogingen" in html and "Probeer het over" in html


# --- e-mail --------------------------------------------------------------------------------------


def test_the_receipt_email_is_in_the_sessions_language(request, settings):
    session = request.getfixturevalue("finished")
    ChargingSession.objects.filter(pk=session.pk).update(language="fr", email="d@example.com")
    receipt = session.payment.receipt
    mail.outbox.clear()
    receipts.receipt_email(receipt_id=receipt.pk)
    (message,) = mail.outbox
    assert message.subject == f"Votre reçu de recharge {receipt.number}"
    assert "Merci d'avoir rechargé" in message.body and "Débité : 6,66 EUR." in message.body
