/*
 * Taskdesk live updates: the client half of tasks_app/consumers.py.
 *
 * The page holds <div id="live" hx-ext="ws" ws-connect="/ws/tasks/...?after=N"> (htmx-ext-ws 2.0.4),
 * and every pushed frame carries out-of-band fragments plus an element with data-event-id.
 * This file:
 *  - shows the connection state: <html data-ws="open|closed|connecting"> (tests wait on it)
 *    and the #live-indicator text/state;
 *  - remembers the newest event id seen, per organization (ids commit in order only within one
 *    organization), and makes every (re)connect resume from there: the extension captures the
 *    ws-connect URL once, so we rewrite `after=org:id,org:id` in htmx.createWebSocket;
 *  - reconnects after any unexpected close (the extension only retries 1006/1011/1012/1013;
 *    a server restart closes with 1001), but not after the server ended the page's updates on
 *    purpose (tasks_app/consumers.py): 4401 signed out and 4403/4404 no access stop reconnecting
 *    (data-ws="signed-out" / "no-access"; another try would be refused the same way), and 4409
 *    (too far behind to replay) reloads the page;
 *  - marks an edit form whose field has focus as dirty before a frame swaps, so the dirty-form
 *    guard in static/js/taskdesk.js keeps it (and says the task changed) instead of replacing it.
 */
(function () {
  "use strict";

  var RETRY_CODES = [1006, 1011, 1012, 1013]; // the extension retries these itself
  var ENDED = { 4401: "signed-out", 4403: "no-access", 4404: "no-access" }; // closed on purpose
  var RELOAD_CODE = 4409; // too far behind to replay: a fresh page is cheaper
  var ENDED_STATES = { "signed-out": true, "no-access": true };
  var LABELS = {
    open: "live",
    delayed: "live updates paused",
    connecting: "connecting…",
    "signed-out": "signed out",
    "no-access": "no access",
  };
  var TITLES = {
    open: "Live updates on",
    delayed: "Live updates paused: the server cannot reach its message bus. This page catches up from the event log by itself.",
    "signed-out": "Signed out: sign in again for live updates",
    "no-access": "You no longer have access to this page's organization",
  };
  var lastEventId = 0;
  var positions = {}; // organization id -> newest event id seen
  var params = {}; // other query parameters a reconnect carries (the list's view), set by the page
  var currentSocket = null;
  var ownRetries = 0;

  function setState(state) {
    document.documentElement.dataset.ws = state;
    // An open socket whose server reports the channel layer unreachable (#live-health, pushed by
    // the hub) is still live, only slower: it reads the event log every second meanwhile.
    var shown = state === "open" && serverDelayed() ? "delayed" : state;
    document.documentElement.dataset.live = shown;
    var indicator = document.getElementById("live-indicator");
    if (indicator) {
      indicator.dataset.state = shown;
      indicator.classList.toggle("is-live", shown === "open");
      indicator.classList.toggle("is-reconnecting", shown !== "open" && !ENDED_STATES[shown]);
      indicator.textContent = LABELS[shown] || "reconnecting…";
      indicator.title = TITLES[shown] || "Live updates interrupted; reconnecting";
    }
  }

  function serverDelayed() {
    var health = document.getElementById("live-health");
    return !!health && health.dataset.liveState === "delayed";
  }

  function noteEventId(value) {
    var id = parseInt(value, 10);
    if (id > lastEventId) lastEventId = id;
  }

  function notePosition(org, value) {
    var id = parseInt(value, 10);
    if (!(positions[org] >= id)) positions[org] = id;
    noteEventId(id);
  }

  function initialEventId() {
    var meta = document.getElementById("last-event-id");
    if (meta) noteEventId(meta.dataset.eventId);
    var live = document.querySelector("[ws-connect]");
    if (!live) return;
    var match = /[?&]after=([^&]*)/.exec(live.getAttribute("ws-connect"));
    if (!match) return;
    var after = decodeURIComponent(match[1]);
    if (after.indexOf(":") < 0) {
      noteEventId(after);
      return;
    }
    after.split(",").forEach(function (part) {
      var pair = part.split(":");
      if (pair.length === 2) notePosition(pair[0], pair[1]);
    });
  }

  function afterValue() {
    var orgs = Object.keys(positions);
    if (!orgs.length) return lastEventId ? String(lastEventId) : "";
    return orgs.sort().map(function (org) { return org + ":" + positions[org]; }).join(",");
  }

  function withParam(url, name, value) {
    var re = new RegExp("([?&])" + name + "=[^&]*(&|$)");
    url = url.replace(re, function (all, lead, tail) { return tail ? lead : ""; });
    if (value === "") return url;
    return url + (url.indexOf("?") >= 0 ? "&" : "?") + name + "=" + encodeURIComponent(value);
  }

  function withAfter(url) {
    var after = afterValue();
    if (after) {
      if (/[?&]after=[^&]*/.test(url)) url = url.replace(/([?&]after=)[^&]*/, "$1" + after);
      else url += (url.indexOf("?") >= 0 ? "&" : "?") + "after=" + after;
    }
    Object.keys(params).forEach(function (name) {
      var value = typeof params[name] === "function" ? params[name]() : params[name];
      url = withParam(url, name, value);
    });
    return url;
  }

  // Full jitter capped at 5 s (the extension's default grows to 64 s): a dashboard left open
  // through a network blip or a deploy should be live again within seconds.
  function reconnectDelay(retries) {
    return Math.min(5000, 500 * Math.pow(2, retries)) * (0.5 + Math.random() / 2);
  }

  // --- frames about elements this page does not show ------------------------------------
  // A frame carries every fragment its event touches (a row, a panel, a card); the page may not
  // show some of them (a row on another page or outside the filter). htmx would log an
  // htmx:oobErrorNoTarget error for each; the "live-targets" extension (on #live, beside "ws")
  // drops those fragments before htmx swaps the frame.
  function oobTarget(node) {
    var spec = node.getAttribute("hx-swap-oob") || "true";
    var colon = spec.indexOf(":");
    if (colon < 0) return node.id ? document.getElementById(node.id) : null;
    try {
      return document.querySelector(spec.slice(colon + 1));
    } catch (e) {
      return true; // not ours to judge: let htmx say what is wrong with it
    }
  }

  function installTargetFilter() {
    if (!window.htmx) return;
    htmx.defineExtension("live-targets", {
      transformResponse: function (text, xhr) {
        if (xhr) return text; // ordinary responses target what the request named
        var template = document.createElement("template");
        template.innerHTML = text;
        var dropped = false;
        Array.prototype.slice.call(template.content.children).forEach(function (node) {
          if (!oobTarget(node)) {
            node.remove();
            dropped = true;
          }
        });
        return dropped ? template.innerHTML : text;
      },
    });
  }

  function installSocketFactory() {
    if (!window.htmx) return;
    htmx.config.wsReconnectDelay = reconnectDelay;
    htmx.createWebSocket = function (url) {
      var socket = new WebSocket(withAfter(url), []);
      socket.binaryType = htmx.config.wsBinaryType;
      return socket;
    };
  }

  // --- forms being edited ------------------------------------------------------------------
  // static/js/taskdesk.js skips any out-of-band swap whose target holds a form.inline-edit
  // marked data-dirty (typed into, or sent back with an error) and tells the user the task
  // changed. A field that merely has focus (an open status select, a caret in a textarea) is
  // not dirty yet, but a swap would still yank it away: mark its form before the frame swaps.
  function protectFocusedForm() {
    var active = document.activeElement;
    if (!active || !active.matches || !active.matches("input, textarea, select")) return;
    var form = active.closest("form.inline-edit");
    if (form) form.dataset.dirty = "1";
  }

  // The frame's event id (data-event-id on the #last-event-id element, or any element), and
  // its organization where the frame names it (data-org-id beside it).
  function noteFrameEventId(message) {
    var re = /data-event-id="(\d+)"/g;
    var match;
    while ((match = re.exec(message)) !== null) noteEventId(match[1]);
    var withOrg = /data-event-id="(\d+)" data-org-id="(\d+)"/g;
    while ((match = withOrg.exec(message)) !== null) notePosition(match[2], match[1]);
  }

  // --- websocket lifecycle -----------------------------------------------------------------

  document.addEventListener("htmx:wsConnecting", function () {
    if (document.documentElement.dataset.ws !== "open") setState("connecting");
  });

  document.addEventListener("htmx:wsOpen", function (evt) {
    currentSocket = evt.detail.event && evt.detail.event.target;
    ownRetries = 0;
    setState("open");
  });

  document.addEventListener("htmx:wsClose", function (evt) {
    var code = evt.detail.event && evt.detail.event.code;
    var socketElt = evt.target;
    currentSocket = null;
    if (code === RELOAD_CODE) {
      window.location.reload();
      return;
    }
    if (ENDED[code]) {
      setState(ENDED[code]);
      return;
    }
    setState("closed");
    if (!document.body.contains(socketElt) || RETRY_CODES.indexOf(code) >= 0) return;
    var wrapper = evt.detail.socketWrapper;
    var delay = reconnectDelay(ownRetries);
    ownRetries += 1;
    setTimeout(function () {
      if (document.body.contains(socketElt) && wrapper && wrapper.reconnect) wrapper.reconnect();
    }, delay);
  });

  document.addEventListener("htmx:wsBeforeMessage", function (evt) {
    protectFocusedForm();
    noteFrameEventId(evt.detail.message);
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    // A pushed #live-health or #live-notice replaced the page's own: show what it says.
    var notice = document.getElementById("live-notice");
    if (notice && notice.textContent.trim()) notice.hidden = false;
    if (document.documentElement.dataset.ws === "open") setState("open");
  });

  // For the browser tests and the curious: read-only state plus a way to drop the socket.
  window.taskdeskLive = {
    lastEventId: function () { return lastEventId; },
    after: afterValue,
    drop: function () { if (currentSocket) currentSocket.close(4000, "dropped"); },
    // A query parameter every later (re)connect carries, e.g. the list's view (a function: read then).
    setParam: function (name, value) { params[name] = value; },
    // A frame to the server on the open socket (false when there is none: the reconnect carries params).
    send: function (text) {
      if (!currentSocket || currentSocket.readyState !== WebSocket.OPEN) return false;
      currentSocket.send(text);
      return true;
    },
  };

  initialEventId();
  if (document.querySelector("[ws-connect]")) {
    setState("connecting");
  } else {
    // A page without live updates (no organization, a choice of tasks): no indicator to watch.
    document.documentElement.dataset.ws = "none";
    var indicator = document.getElementById("live-indicator");
    if (indicator) indicator.hidden = true;
  }
  // htmx and the extension load with `defer` before this file; the socket opens when htmx
  // processes the page (DOMContentLoaded), after this factory is in place.
  installSocketFactory();
  installTargetFilter();
})();
