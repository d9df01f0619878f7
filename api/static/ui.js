// Live updates for the synthjobs dashboard, without a build step: an element with data-poll="URL" has its
// data-poll-select child replaced by the same element of URL's answer every 2 s. The job page stops when the
// fragment says data-terminal="true" and then reloads once (for the figures and downloads a finished job
// has); the jobs list stops when no job on it is live any more. Pages read fully without this script.
(function () {
  "use strict";
  var INTERVAL_MS = 2000;

  function poll(container) {
    var url = container.getAttribute("data-poll");
    var selector = container.getAttribute("data-poll-select");
    var timer = null;

    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (response.redirected || !response.ok) { throw new Error("poll answered " + response.status); }
          return response.text();
        })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.querySelector(selector);
          var old = container.querySelector(selector);
          if (!fresh || !old) { return; }
          old.replaceWith(fresh);
          var live = fresh.querySelector("[data-terminal]") || (fresh.hasAttribute("data-terminal") ? fresh : null);
          if (live && live.getAttribute("data-terminal") === "true") {
            clearInterval(timer);
            if (container.hasAttribute("data-reload-when-done")) { window.location.reload(); }
          }
          if (!live && !fresh.querySelector(".state-queued, .state-running")) { clearInterval(timer); }
        })
        .catch(function () { clearInterval(timer); });
    }

    timer = setInterval(tick, INTERVAL_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var containers = document.querySelectorAll("[data-poll]");
    for (var i = 0; i < containers.length; i++) { poll(containers[i]); }
  });
})();
