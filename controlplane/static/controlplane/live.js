// Live updates by short polling: every second, fetch this page again and
// swap in each element marked data-live. Without JavaScript the page is
// still complete; with it, a missed update is repaired by the next poll.
(function () {
  "use strict";
  var INTERVAL_MS = 1000;
  var busy = false;

  function refresh() {
    var live = document.querySelectorAll("[data-live][id]");
    if (!live.length || busy || document.hidden) return;
    busy = true;
    fetch(window.location.href, { headers: { "X-Live-Refresh": "1" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        live.forEach(function (element) {
          var replacement = fresh.getElementById(element.id);
          if (replacement && replacement.innerHTML !== element.innerHTML) {
            var open = Array.prototype.map.call(element.querySelectorAll("details[open]"), function (d) { return d.id; });
            element.innerHTML = replacement.innerHTML;
            open.forEach(function (id) { var d = id && document.getElementById(id); if (d) d.open = true; });
          }
        });
      })
      .catch(function () { /* The next poll tries again. */ })
      .finally(function () { busy = false; });
  }

  window.setInterval(refresh, INTERVAL_MS);
})();
