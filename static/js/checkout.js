// Checkout: collect a payment method in the browser, let the server hold the amount.
// The one seam between production and the embedded default is `wallet`: how a payment method
// is collected and how a 3-D Secure step is handled. The server path is the same for both.
(function () {
  "use strict";
  var form = document.getElementById("pay-form");
  if (!form) return;
  var button = document.getElementById("pay-button");
  var errorBox = document.getElementById("pay-error");
  var mode = form.dataset.stripeMode;
  // The page's language from Django's JavaScriptCatalog (/jsi18n/); English if it did not load.
  var gettext = window.gettext || function (text) { return text; };

  // One id per press of Pay: a press that reaches the server twice opens one session, not two.
  function newAttempt() {
    form.elements.attempt.value = Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    button.disabled = false;
    newAttempt();  // after an error, pressing Pay again is a new attempt
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
          if (r.error) throw new Error(r.error.message || gettext("The card details could not be read."));
          return r.token.card.id;
        });
      },
      authenticate: function (secret) {
        return stripe.confirmCardPayment(secret);
      },
      radar: function () { return Promise.resolve(""); },  // the shim has no Radar
    };
  }

  function stripeWallet(stripe) {
    // Stripe.js: Payment Element for cards, Express Checkout Element for Apple Pay / Google Pay.
    var hold = form.querySelector("input[name=hold_amount]:checked");
    var elements = stripe.elements({
      mode: "payment", amount: parseInt(hold.value, 10), currency: form.dataset.currency.toLowerCase(),
      captureMethod: "manual", paymentMethodCreation: "manual", paymentMethodTypes: ["card"],
    });
    elements.create("payment").mount("#card-element");
    var express = elements.create("expressCheckout");
    express.mount("#express-element");
    express.on("confirm", function () { form.requestSubmit(); });
    form.addEventListener("change", function (e) {
      if (e.target.name === "hold_amount") elements.update({ amount: parseInt(e.target.value, 10) });
    });
    return {
      collect: function () {
        return elements.submit().then(function (r) {
          if (r.error) throw new Error(r.error.message);
          return stripe.createPaymentMethod({ elements: elements });
        }).then(function (r) {
          if (r.error) throw new Error(r.error.message);
          return r.paymentMethod.id;
        });
      },
      authenticate: function (secret) {
        return stripe.handleNextAction({ clientSecret: secret });
      },
      // Radar's snapshot of this browser for the server's PaymentIntent; paying works without it.
      radar: function () {
        return stripe.createRadarSession().then(function (r) {
          return (r.radarSession && r.radarSession.id) || "";
        }, function () { return ""; });
      },
    };
  }

  function post(url, data) {
    return fetch(url, {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value },
    }).then(function (r) {
      return r.json().catch(function () {
        return { ok: false, message: gettext("Unexpected answer from the server. If an amount is held, it is released automatically.") };
      });
    });
  }

  function follow(wallet, answer) {
    if (!answer.ok) { showError(answer.message); return; }
    if (answer.next === "authenticate") {
      return wallet.authenticate(answer.client_secret).then(function () {
        return post(answer.confirm_url, new FormData());
      }).then(function (a) { return follow(wallet, a); });
    }
    window.location.assign(answer.status_url);
  }

  function start() {
    if (typeof Stripe === "undefined") { setTimeout(start, 100); return; }
    var stripe = Stripe(form.dataset.stripeKey);
    var wallet = mode === "localstripe" ? localstripeWallet(stripe) : stripeWallet(stripe);
    button.disabled = false;
    newAttempt();
    form.addEventListener("change", label);
    label();
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      errorBox.hidden = true;
      button.disabled = true;
      wallet.collect().then(function (pm) {
        var data = new FormData(form);
        data.set("payment_method", pm);
        return wallet.radar().then(function (rse) {
          if (rse) data.set("radar_session", rse);
          return post(form.action, data);
        }).then(function (a) { return follow(wallet, a); });
      }).catch(function (err) {
        showError((err && err.message) || gettext("Something went wrong. Nothing has been charged."));
      });
    });
  }
  start();
})();
