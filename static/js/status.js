// Live status: poll the session and update the page in place; say when the figures are stale;
// send Stop by script so a press on a dropped connection is sent again until it is answered.
(function () {
  "use strict";
  const _ = window.gettext || ((s) => s);
  var live = document.getElementById("live");
  if (!live) return;
  var POLL_MS = 2000, MAX_BACKOFF_MS = 30000, TIMEOUT_MS = 8000;
  var staleMs = (parseFloat(live.dataset.staleAfter) || 10) * 1000;
  var lastHeard = Date.now();  // the figures on the page are the server's as of loading it
  var failures = 0, timer = null, inFlight = false;
  // The page's language from Django's JavaScriptCatalog (/jsi18n/); English if it did not load.
  var gettext = _;
  var interpolate = window.interpolate || function (format, values) {
    return format.replace(/%\((\w+)\)s/g, function (all, name) { return values[name]; });
  };

  function elapsedEl() { return document.getElementById("elapsed"); }
  function showElapsed(start, end) {
    var elapsed = elapsedEl();
    if (!elapsed || !start) return;
    var m = Math.max(0, Math.floor(((end ? new Date(end) : new Date()) - new Date(start)) / 60000));
    elapsed.textContent = interpolate(gettext("%(hours)s h %(minutes)s min"), { hours: Math.floor(m / 60), minutes: m % 60 }, true);
  }
  var first = elapsedEl();
  if (first) showElapsed(first.dataset.start, first.dataset.end);

  function withTimeout(url, options) {
    var controller = window.AbortController ? new AbortController() : null;
    var t = controller ? setTimeout(function () { controller.abort(); }, TIMEOUT_MS) : null;
    if (controller) options.signal = controller.signal;
    return fetch(url, options).finally(function () { clearTimeout(t); });
  }

  // --- Stale figures --------------------------------------------------------------------------
  var stale = document.getElementById("stale");
  // Not heard from the server for a while: say since when, and that the page is reconnecting.
  function checkStale() {
    if (!stale) return;
    var old = live.dataset.settled !== "1" && Date.now() - lastHeard > staleMs;
    if (old) {
      var time = new Date(lastHeard).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
      var text = _("No update since %(time)s: these figures may be out of date. Reconnecting…");
      text = interpolate(text, { time: time }, true);
      if (stale.textContent !== text) stale.textContent = text;
    }
    stale.hidden = !old;
  }

  // --- The page follows the session -----------------------------------------------------------
  function changed(s) {
    return s.status !== live.dataset.status || s.payment_status !== live.dataset.payment ||
      (s.receipt ? "1" : "0") !== live.dataset.receipt;
  }

  // The new state's page, swapped in without a reload; the live region keeps its node and announces.
  function refreshPage() {
    return withTimeout(window.location.href, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("status page " + r.status);
      return r.text();
    }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.getElementById("live");
      if (!fresh) throw new Error("no live section");
      Object.keys(fresh.dataset).forEach(function (k) { live.dataset[k] = fresh.dataset[k]; });
      var region = live.querySelector("[aria-live]"), word = document.getElementById("state-word");
      var newWord = doc.getElementById("state-word");
      Array.prototype.slice.call(live.children).forEach(function (child) {
        if (child !== region && child !== stale) child.remove();
      });
      Array.prototype.slice.call(fresh.children).forEach(function (child) {
        if (child.getAttribute("aria-live") === "polite" && child.classList.contains("state")) return;
        if (child.id === "stale") return;
        live.appendChild(document.importNode(child, true));
      });
      if (word && newWord) word.textContent = newWord.textContent;
      document.title = doc.title;
      var e = elapsedEl();
      if (e) showElapsed(e.dataset.start, e.dataset.end);
      bindStop();
    });
  }

  function schedule(ms) {
    clearTimeout(timer);
    if (live.dataset.settled === "1") return;
    timer = setTimeout(poll, ms);
  }

  function poll() {
    if (inFlight) return;
    inFlight = true;
    withTimeout(live.dataset.statusUrl, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error("status " + r.status);
      return r.json();
    }).then(function (s) {
      var next = changed(s) ? refreshPage() : Promise.resolve();
      return next.then(function () {
        var kwh = document.getElementById("kwh"), cost = document.getElementById("cost");
        if (kwh && cost) { kwh.textContent = s.kwh; cost.textContent = s.cost; }
        showElapsed(s.started_at, s.ended_at);
        lastHeard = Date.now();
        failures = 0;
        checkStale();
      });
    }).then(function () {
      inFlight = false;
      schedule(POLL_MS);
    }, function () {
      inFlight = false;
      failures += 1;
      checkStale();
      // Offline or a timeout: back off (4, 8, 16, 30 s...), and try at once when the browser is back online.
      schedule(Math.min(MAX_BACKOFF_MS, POLL_MS * Math.pow(2, failures)));
    });
  }

  // --- Stop survives a dropped connection ------------------------------------------------------
  var stopKey = "directpay:stop:" + live.dataset.statusUrl;
  var stopTimer = null, stopTries = 0, stopSending = false, stopFreshToken = false;

  function storage() { try { return window.sessionStorage; } catch (e) { return null; } }
  function stopForm() { return document.getElementById("stop-form"); }
  function stopSay(message) {
    var p = document.getElementById("stop-progress");
    if (!p) return;
    p.textContent = message;
    p.hidden = false;
  }

  function freshToken() {
    return withTimeout(window.location.href, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error("status page " + r.status);
      return r.text();
    }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var token = doc.querySelector("#stop-form [name=csrfmiddlewaretoken]"), form = stopForm();
      if (token && form) form.elements.csrfmiddlewaretoken.value = token.value;
    });
  }

  function sendStop() {
    var form = stopForm();
    if (!form || stopSending) return;
    stopSending = true;
    clearTimeout(stopTimer);
    withTimeout(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRFToken": form.elements.csrfmiddlewaretoken.value },
    }).then(function (r) {
      return r.json().then(function (a) { return { status: r.status, answer: a }; }, function () {
        return { status: r.status, answer: null };
      });
    }).then(function (res) {
      stopSending = false;
      if (res.answer && res.answer.ok) {
        var st = storage();
        if (st) st.removeItem(stopKey);
        stopSay(_("Stopping…"));
        schedule(0);
        return;
      }
      if (res.answer && res.answer.csrf && !stopFreshToken) {
        // The page's CSRF token went stale (cookies cleared, a long pause): the page, fetched again,
        // carries a fresh one; send once more with it.
        stopFreshToken = true;
        return freshToken().then(sendStop);
      }
      if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
        // Refused for good (not the payer's browser, a page too old): sending again cannot help.
        var st2 = storage();
        if (st2) st2.removeItem(stopKey);
        stopSay((res.answer && res.answer.message) ||
          _("Stop could not be sent from this page. Reload it and press Stop again: until then the charge goes on."));
        var again = form.querySelector("button");
        if (again) again.disabled = false;
        return;
      }
      throw new Error("stop " + res.status);
    }).catch(function () {
      stopSending = false;
      stopTries += 1;
      stopSay(_("Stop not sent yet, retrying…"));
      stopTimer = setTimeout(sendStop, Math.min(15000, 1000 * Math.pow(2, stopTries - 1)));
    });
  }

  function bindStop() {
    var form = stopForm();
    if (!form || form.dataset.bound) return;
    form.dataset.bound = "1";
    form.addEventListener("submit", function (e) {
      e.preventDefault();  // without JavaScript the form posts as before
      var button = form.querySelector("button");
      if (button) button.disabled = true;
      var st = storage();
      if (st) st.setItem(stopKey, "1");  // a reload before the answer sends it again
      stopTries = 0;
      stopFreshToken = false;
      if (navigator.onLine === false) stopSay(_("Stop not sent yet, retrying…"));
      sendStop();
    });
    var st = storage();
    if (st && st.getItem(stopKey)) {
      var button = form.querySelector("button");
      if (button) button.disabled = true;
      sendStop();
    }
  }
  bindStop();

  window.addEventListener("online", function () {
    if (stopTimer) { clearTimeout(stopTimer); stopTimer = null; sendStop(); }
    if (live.dataset.settled !== "1") schedule(0);
  });
  window.addEventListener("offline", checkStale);

  if (live.dataset.settled === "1") return;
  setInterval(function () {
    checkStale();
    if (live.dataset.settled === "1") return;
    var e = elapsedEl();
    if (e && !document.hidden) showElapsed(e.dataset.start, e.dataset.end);
  }, 1000);
  schedule(POLL_MS);
})();
