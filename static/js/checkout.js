// Checkout: collect the card in the browser, let the server hold the amount.
// The one seam between production and the embedded default is `wallet`: how the card is collected
// (a ConfirmationToken from Stripe.js, a card id from localstripe's shim) and how a 3-D Secure step
// is handled. The server path is the same for both.
(function () {
  "use strict";
  const _ = window.gettext || ((s) => s);
  // This tab's press of Pay for this charger, kept across a reload: {attempt, status_url}.
  var key = "directpay:pay:" + window.location.pathname;
  function storage() { try { return window.sessionStorage; } catch (e) { return null; } }
  function remembered() {
    var st = storage();
    try { return (st && JSON.parse(st.getItem(key) || "null")) || {}; } catch (e) { return {}; }
  }
  function remember(value) {
    var st = storage();
    if (st) st.setItem(key, JSON.stringify(value));
  }

  // A press of Pay whose answer never came (the connection dropped, the page was reloaded): ask the
  // server which charge it opened, so the driver lands on it with the right to stop it. Nothing
  // found means the press never arrived: the form is there to press again (the same attempt).
  function resume() {
    var mine = remembered(), ask = document.getElementById("resume-form");
    if (!mine.sent || mine.status_url || !ask) return;
    var data = new FormData(ask);
    data.set("attempt", mine.attempt);
    fetch(ask.action, {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRFToken": data.get("csrfmiddlewaretoken") },
    }).then(function (r) { return r.json(); }).then(function (a) {
      if (!a.ok) return;
      remember({ attempt: mine.attempt, sent: true, status_url: a.status_url });
      window.location.replace(a.status_url);
    }).catch(function () {
      window.addEventListener("online", resume, { once: true });
    });
  }

  var form = document.getElementById("pay-form");
  if (!form) {
    // The charger is busy: if this tab paid for it, the reload belongs on that charge's status page.
    var mine = remembered();
    if (mine.status_url) window.location.replace(mine.status_url);
    else resume();
    return;
  }
  resume();
  var button = document.getElementById("pay-button");
  var errorBox = document.getElementById("pay-error");
  var loadError = document.getElementById("card-load-error");
  var mode = form.dataset.stripeMode;

  // One id per press of Pay: a press that reaches the server twice (a double tap, a retry, a reload
  // while it was on its way) opens one session, not two; kept in sessionStorage until answered.
  function newAttempt() {
    form.elements.attempt.value = Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
    remember({ attempt: form.elements.attempt.value });
  }
  function useAttempt() {
    var mine = remembered();
    if (mine.attempt && !mine.status_url) form.elements.attempt.value = mine.attempt;
    else newAttempt();
  }

  function busy(on) {
    button.disabled = on;
    form.setAttribute("aria-busy", on ? "true" : "false");
    if (on) {
      button.setAttribute("aria-busy", "true");
      button.textContent = button.dataset.busyLabel;
    } else {
      button.removeAttribute("aria-busy");
      label();
    }
  }

  // The error gets focus, so a screen reader reads it and the driver sees it without scrolling.
  // After the server's answer, pressing Pay again is a new attempt; after a dropped connection it is
  // the same one, so that if the first press did reach us it is found again rather than held twice.
  function showError(message, sameAttempt) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    busy(false);
    if (!sameAttempt) newAttempt();
    errorBox.focus();
  }

  function label() {
    var hold = form.querySelector("input[name=hold_amount]:checked");
    button.textContent = button.dataset.label + (hold ? " " + hold.dataset.amount + " " + form.dataset.currency : "");
  }

  function localstripeWallet(stripe) {
    // localstripe's shim has a card element and createToken; a card id works as a payment method.
    var card = stripe.elements().create("card");
    card.mount("#card-element");
    return {
      collect: function () {
        return stripe.createToken(card).then(function (r) {
          if (r.error) throw new Error(r.error.message || _("The card details could not be read."));
          return { field: "payment_method", id: r.token.card.id };
        });
      },
      authenticate: function (secret) {
        return stripe.confirmCardPayment(secret);
      },
      radar: function () { return Promise.resolve(""); },  // the shim has no Radar
      focus: function () {
        var input = document.querySelector("#card-element input");
        if (input) input.focus();
      },
    };
  }

  function stripeWallet(stripe) {
    // Stripe.js: Payment Element for cards, Express Checkout Element for Apple Pay / Google Pay.
    // The browser makes a ConfirmationToken; the server creates the intent and confirms it with the
    // token (Stripe's "finalize payments on the server"). Elements must match that intent: amount,
    // currency, manual capture, cards.
    var hold = form.querySelector("input[name=hold_amount]:checked");
    var elements = stripe.elements({
      mode: "payment", amount: parseInt(hold.value, 10), currency: form.dataset.currency.toLowerCase(),
      captureMethod: "manual", paymentMethodTypes: ["card"],
    });
    var payment = elements.create("payment");
    payment.mount("#card-element");
    var express = elements.create("expressCheckout");
    express.mount("#express-element");
    // The wallet's sheet stays open until told how it went: a refusal is reported to it.
    var sheet = null;
    express.on("confirm", function (event) {
      sheet = event;
      form.requestSubmit();
    });
    form.addEventListener("change", function (e) {
      if (e.target.name === "hold_amount") elements.update({ amount: parseInt(e.target.value, 10) });
    });
    return {
      collect: function () {
        return elements.submit().then(function (r) {
          if (r.error) throw new Error(r.error.message);
          return stripe.createConfirmationToken({ elements: elements });
        }).then(function (r) {
          if (r.error) throw new Error(r.error.message);
          return { field: "confirmation_token", id: r.confirmationToken.id };
        });
      },
      failed: function () {
        if (sheet) sheet.paymentFailed({ reason: "fail" });
        sheet = null;
      },
      authenticate: function (secret) {
        return stripe.handleNextAction({ clientSecret: secret });
      },
      focus: function () { payment.focus(); },
      // Radar's snapshot of this browser for the server's PaymentIntent; paying works without it.
      radar: function () {
        return stripe.createRadarSession().then(function (r) {
          return (r.radarSession && r.radarSession.id) || "";
        }, function () { return ""; });
      },
    };
  }

  function post(url, data) {
    remember({ attempt: form.elements.attempt.value, sent: true });
    return fetch(url, {
      method: "POST", body: data, credentials: "same-origin",
      headers: {
        "Accept": "application/json",
        "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value,
      },
    }).catch(function () {
      var lost = new Error(_("The connection dropped before we answered. If an amount was held, it is released automatically; pressing Pay again will not hold it twice."));
      lost.network = true;
      throw lost;
    }).then(function (r) {
      return r.json().catch(function () {
        return { ok: false, message: _("Unexpected answer from the server. If an amount is held, it is released automatically.") };
      });
    });
  }

  function follow(wallet, answer) {
    if (!answer.ok) {
      if (wallet.failed) wallet.failed();
      showError(answer.message);
      return;
    }
    if (answer.next === "authenticate") {
      return wallet.authenticate(answer.client_secret).then(function () {
        return post(answer.confirm_url, new FormData());
      }).then(function (a) { return follow(wallet, a); });
    }
    remember({ attempt: form.elements.attempt.value, sent: true, status_url: answer.status_url });
    window.location.assign(answer.status_url);
  }

  // Stripe.js (or localstripe's shim) not there after a while: say why (nothing is charged) and offer
  // Retry, which loads it again. The page keeps looking for it: a late arrival still starts the form.
  var deadline = Date.now() + (parseFloat(form.dataset.stripeTimeout) || 10) * 1000;
  var started = false;
  function cannotLoad() {
    if (started || !loadError.hidden) return;
    loadError.hidden = false;
    loadError.focus();
  }
  document.getElementById("card-load-retry").addEventListener("click", function () {
    loadError.hidden = true;
    deadline = Date.now() + (parseFloat(form.dataset.stripeTimeout) || 10) * 1000;
    var script = document.createElement("script");
    script.src = form.dataset.stripeJsUrl;
    script.addEventListener("error", function () { deadline = 0; cannotLoad(); });
    document.head.appendChild(script);
  });

  // Several connectors: the price Pay sends (and the line above Pay) follow the chosen one. Each
  // option also posts its own digest, so a page whose script did not run still pays the right price.
  function chooseConnector() {
    var chosen = document.querySelector("input[name=connector][form=pay-form]:checked");
    if (!chosen) return;
    form.elements.price.value = chosen.dataset.price;
    var line = document.getElementById("connector-chosen");
    if (line) line.textContent = chosen.dataset.summary;
  }
  document.addEventListener("change", function (e) {
    if (e.target.name === "connector") chooseConnector();
  });
  chooseConnector();

  // The card box is a container: a tap anywhere on it goes to the card number.
  var cardBox = document.getElementById("card-element");
  var focusCard = function () {};
  cardBox.addEventListener("click", function (e) {
    if (e.target === cardBox) focusCard();
  });

  function start() {
    if (typeof Stripe === "undefined") {
      if (Date.now() > deadline) cannotLoad();
      setTimeout(start, 200);
      return;
    }
    started = true;
    loadError.hidden = true;
    var stripe = Stripe(form.dataset.stripeKey);
    var wallet = mode === "localstripe" ? localstripeWallet(stripe) : stripeWallet(stripe);
    focusCard = wallet.focus || focusCard;
    button.disabled = false;
    useAttempt();
    form.addEventListener("change", label);
    label();
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      errorBox.hidden = true;
      busy(true);
      wallet.collect().then(function (card) {
        var data = new FormData(form);
        data.set(card.field, card.id);
        return wallet.radar().then(function (rse) {
          if (rse) data.set("radar_session", rse);
          return post(form.action, data);
        }).then(function (a) { return follow(wallet, a); });
      }).catch(function (err) {
        if (wallet.failed) wallet.failed();
        showError((err && err.message) || _("Something went wrong. Nothing has been charged."), err && err.network);
      });
    });
  }
  start();
})();
