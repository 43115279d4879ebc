/* The operations view's refresh (templates/ops/ops.html, tasks_app/views/ops.py).
 *
 * The page's socket (#live-ops-<organization>, consumers.OpsConsumer) pushes one small frame per event of the
 * organization: its id. Each frame asks for a refresh of #ops-body ("ops-changed", which its
 * hx-trigger listens for), at most one per data-min-gap seconds: the first change shows at once,
 * a burst of changes costs one refresh per gap, and a hidden tab refreshes when it is shown again.
 */
(function () {
  "use strict";

  var lastRefresh = 0;
  var timer = null;
  var missed = false; // a change arrived while the tab was hidden

  function minGap() {
    var live = document.querySelector("[ws-connect][data-page='ops']");
    var seconds = live ? parseFloat(live.dataset.minGap) : 2;
    return (isNaN(seconds) ? 2 : seconds) * 1000;
  }

  function refresh() {
    timer = null;
    var body = document.getElementById("ops-body");
    if (!body) return;
    if (document.visibilityState !== "visible") {
      missed = true;
      return;
    }
    lastRefresh = Date.now();
    htmx.trigger(body, "ops-changed");
  }

  function changed() {
    if (timer !== null) return; // one refresh is already on its way: it will show this change too
    var wait = Math.max(0, lastRefresh + minGap() - Date.now());
    timer = setTimeout(refresh, wait);
  }

  document.addEventListener("htmx:wsAfterMessage", function (evt) {
    if (evt.target && evt.target.closest && evt.target.closest("[ws-connect][data-page='ops']")) changed();
  });

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && missed) {
      missed = false;
      changed();
    }
  });

  // For the browser tests: how many refreshes the bell asked for so far.
  var asked = 0;
  document.addEventListener("ops-changed", function () { asked += 1; });
  window.taskdeskOps = { refreshesAsked: function () { return asked; } };
})();
