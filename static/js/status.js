// Live status: poll the session; update the figures, and reload the page when its state moves on.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || live.dataset.settled === "1") return;
  var elapsed = document.getElementById("elapsed");
  // The page's language from Django's JavaScriptCatalog (/jsi18n/); English if it did not load.
  var gettext = window.gettext || function (text) { return text; };
  var interpolate = window.interpolate || function (format, values) {
    return format.replace(/%\((\w+)\)s/g, function (all, name) { return values[name]; });
  };

  function showElapsed(start, end) {
    if (!elapsed || !start) return;
    var m = Math.max(0, Math.floor(((end ? new Date(end) : new Date()) - new Date(start)) / 60000));
    elapsed.textContent = interpolate(gettext("%(hours)s h %(minutes)s min"), { hours: Math.floor(m / 60), minutes: m % 60 }, true);
  }
  if (elapsed) showElapsed(elapsed.dataset.start, elapsed.dataset.end);

  function poll() {
    fetch(live.dataset.statusUrl, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (s) {
      if (s.status !== live.dataset.status || s.payment_status !== live.dataset.payment ||
          (s.receipt ? "1" : "0") !== live.dataset.receipt) {
        window.location.reload();
        return;
      }
      var kwh = document.getElementById("kwh"), cost = document.getElementById("cost");
      if (kwh) { kwh.textContent = s.kwh; cost.textContent = s.cost; }
      showElapsed(s.started_at, s.ended_at);
      setTimeout(poll, 2000);
    }).catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 2000);
})();
