// A stand-in for Stripe.js (https://js.stripe.com/v3/), which cannot load here: the part of its
// documented API the checkout's production path calls (docs.stripe.com/js), nothing more.
//   Stripe(key); stripe.elements({mode, amount, currency, captureMethod, paymentMethodTypes, ...});
//   elements.create("payment" | "expressCheckout"), element.mount / on / focus, elements.update,
//   elements.submit(); stripe.createConfirmationToken({elements}); stripe.handleNextAction({clientSecret});
//   stripe.createRadarSession().
// Real Stripe.js sends the card to Stripe from its own frames; here the Payment Element is one
// input ("Card number") and the Express Checkout Element a wallet button with the wallet's card,
// and the Stripe calls go to /__stripe_js_standin__/..., which the test answers with Stripe's
// test helpers (a ConfirmationToken from POST /v1/test_helpers/confirmation_tokens).
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script.src).origin + "/__stripe_js_standin__/";

  function call(path, body) {
    return fetch(base + path, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    }).then(function (r) { return r.json(); });
  }

  function Elements(options) {
    if (!options || options.mode !== "payment" || !Number.isInteger(options.amount) ||
        options.currency !== String(options.currency).toLowerCase()) {
      throw new Error("IntegrationError: elements() needs mode, an integer amount and a lowercase currency");
    }
    this.options = Object.assign({}, options);
    this.walletCard = null;  // set while a wallet's confirm event is being handled
    this.payment = null;
  }
  Elements.prototype.update = function (options) { Object.assign(this.options, options); };
  Elements.prototype.create = function (type) {
    var elements = this, handlers = {}, input = null;
    var element = {
      on: function (name, handler) { handlers[name] = handler; },
      focus: function () { if (input) input.focus(); },
      mount: function (selector) {
        var box = document.querySelector(selector);
        if (type === "payment") {
          input = document.createElement("input");
          input.setAttribute("aria-label", "Card number");
          input.inputMode = "numeric";
          box.appendChild(input);
          elements.payment = input;
        } else if (type === "expressCheckout") {
          var card = document.createElement("input");
          card.setAttribute("aria-label", "Wallet card");
          var button = document.createElement("button");
          button.type = "button";
          button.textContent = "Wallet pay";
          button.addEventListener("click", function () {
            elements.walletCard = card.value;
            handlers.confirm && handlers.confirm({
              elementType: "expressCheckout", expressPaymentType: "google_pay",
              // Shown on the button, where a test can read what the wallet's sheet was told.
              paymentFailed: function (payload) {
                button.dataset.paymentFailed = (payload && payload.reason) || "fail";
              },
            });
          });
          box.appendChild(card);
          box.appendChild(button);
        }
      },
    };
    return element;
  };
  Elements.prototype.submit = function () {
    var number = this.walletCard || (this.payment && this.payment.value.replace(/\s/g, ""));
    return Promise.resolve(number ? {} : { error: { type: "validation_error", message: "Your card number is incomplete." } });
  };

  window.Stripe = function (key) {
    if (!/^pk_/.test(key || "")) throw new Error("IntegrationError: Invalid API Key provided");
    return {
      elements: function (options) { return new Elements(options); },
      createConfirmationToken: function (options) {
        var elements = options && options.elements;
        if (!(elements instanceof Elements)) return Promise.reject(new Error("IntegrationError: elements"));
        var number = elements.walletCard || elements.payment.value.replace(/\s/g, "");
        elements.walletCard = null;
        return call("confirmation_tokens", { number: number, elements: elements.options }).then(function (r) {
          return r.error ? { error: r.error } : { confirmationToken: r };
        });
      },
      handleNextAction: function (options) {
        return call("handle_next_action", { client_secret: options.clientSecret }).then(function (r) {
          return r.error ? { error: r.error } : { paymentIntent: r };
        });
      },
      createRadarSession: function () {
        return Promise.resolve({ error: { message: "Radar is not part of the stand-in." } });
      },
    };
  };
})();
