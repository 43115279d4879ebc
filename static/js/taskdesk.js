/* Taskdesk page behaviour around htmx (no framework).
 *
 * - Filter form: empty fields are left out of the URL it pushes.
 * - Edit forms being typed into are never replaced by an out-of-band swap (a pushed event or
 *   another panel's save): the form keeps the user's input and says the task changed; its
 *   version stays the old one, so saving shows the conflict panel.
 * - The live task list's rows, its "N new" and its pause: static/js/task_list.js.
 * - Errors htmx does not swap (403, 400, 5xx, network) show in a toast.
 */
(function () {
  "use strict";

  function toast(message) {
    var box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { box.hidden = true; }, 6000);
  }

  // --- Filter form: keep the pushed URL short and shareable ------------------------------
  document.addEventListener("htmx:configRequest", function (evt) {
    var elt = evt.detail.elt;
    if (!elt || elt.id !== "task-filters") return;
    var params = evt.detail.parameters;
    // FormData in htmx 2; plain object in older versions.
    if (params instanceof FormData) {
      var keep = [];
      params.forEach(function (value, key) { if (value !== "") keep.push([key, value]); });
      Array.from(params.keys()).forEach(function (key) { params.delete(key); });
      keep.forEach(function (pair) { params.append(pair[0], pair[1]); });
    } else {
      Object.keys(params).forEach(function (key) { if (params[key] === "") delete params[key]; });
    }
  });

  // --- Dirty edit forms ---------------------------------------------------------------------
  function markDirty(evt) {
    var form = evt.target.closest && evt.target.closest("form.inline-edit");
    if (form) form.dataset.dirty = "1";
  }
  document.addEventListener("input", markDirty);
  document.addEventListener("change", markDirty);

  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var target = evt.detail.target;
    if (!target) return;
    var dirty = target.matches("form.inline-edit[data-dirty]") ? target : target.querySelector("form.inline-edit[data-dirty]");
    if (dirty) {
      evt.detail.shouldSwap = false;
      var note = dirty.querySelector(".stale-note");
      if (!note) {
        note = document.createElement("p");
        note.className = "stale-note";
        note.setAttribute("role", "status");
        dirty.appendChild(note);
      }
      note.textContent = "This task changed while you were editing. Your input is kept; saving will show what changed.";
      return;
    }
    // Keep an opened editor open across a swap of its panel.
    if (target.querySelector && target.querySelector("details.edit[open]")) {
      reopen[target.id] = true;
    }
  });

  var reopen = {};
  function reopenEditors() {
    Object.keys(reopen).forEach(function (id) {
      var panel = document.getElementById(id);
      var details = panel && panel.querySelector("details.edit");
      if (details) details.open = true;
    });
    reopen = {};
  }

  document.addEventListener("htmx:wsAfterMessage", reopenEditors);
  document.addEventListener("htmx:afterSettle", reopenEditors);

  // A successful save clears the form's dirty mark (the response replaced it anyway).
  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.detail.elt;
    if (form && form.dataset && evt.detail.successful) delete form.dataset.dirty;
  });

  // --- Acts that end or restart a task: confirm, with an optional reason --------------------
  // A form carrying data-confirm (stop, cancel, retry buttons), or a status menu (data-confirm-menu)
  // whose chosen option carries it, asks in the #confirm-act dialog first; the reason typed there
  // goes out as status_reason. Back or Esc sends nothing.
  function confirmation(form) {
    if (form.hasAttribute("data-confirm")) return form;
    if (!form.hasAttribute("data-confirm-menu")) return null;
    var select = form.querySelector("select[name=status]");
    var option = select && select.selectedOptions[0];
    return option && option.hasAttribute("data-confirm") ? option : null;
  }

  document.addEventListener("htmx:confirm", function (evt) {
    var form = evt.detail.elt;
    if (!form || !form.matches || !form.matches("form")) return;
    var source = confirmation(form);
    var dialog = document.getElementById("confirm-act");
    if (!source || !dialog) return;
    evt.preventDefault();
    var reasonField = form.querySelector("[name=status_reason]");
    var input = document.getElementById("confirm-act-reason");
    document.getElementById("confirm-act-title").textContent = source.dataset.confirm;
    document.getElementById("confirm-act-detail").textContent = source.dataset.confirmDetail || "";
    document.getElementById("confirm-act-ok").textContent = source.dataset.confirmButton || "Confirm";
    input.value = reasonField ? reasonField.value : "";
    dialog.returnValue = "";
    // While the question is open a pushed change must not swap the form away: held like a form
    // being typed into, it is sent with the version it was rendered at (a stale one shows the conflict).
    var wasDirty = form.dataset.dirty === "1";
    form.dataset.dirty = "1";
    dialog.addEventListener("close", function closed() {
      dialog.removeEventListener("close", closed);
      if (dialog.returnValue !== "confirm") {
        if (!wasDirty) delete form.dataset.dirty;
        return;
      }
      if (!document.contains(form)) {
        toast("The task changed while you were deciding; nothing was sent. Check it and try again.");
        return;
      }
      if (reasonField) reasonField.value = input.value.trim();
      evt.detail.issueRequest(true);
    });
    dialog.showModal();
    input.focus();
  });

  // --- Relative times tick ------------------------------------------------------------------
  // <time data-relative> reads "just now", "3 min ago"… (taskdesk.relative_time); with
  // data-relative="age", "< 1 min", "3 min"… (taskdesk.age). Counted from the server's clock.
  var serverMeta = document.querySelector("meta[name=server-now]");
  var skew = serverMeta ? (Date.parse(serverMeta.content) - Date.now()) || 0 : 0;

  function relativeText(seconds, when) {
    // A moment in the future is the clocks' disagreement (the page's load time), not news.
    if (seconds < 0 && seconds > -60) seconds = 0;
    var future = seconds < 0;
    seconds = Math.abs(seconds);
    if (seconds < 45) return future ? "in a moment" : "just now";
    var steps = [[3600, 60, "min"], [86400, 3600, "h"], [86400 * 30, 86400, "d"]];
    for (var i = 0; i < steps.length; i++) {
      if (seconds < steps[i][0]) {
        var amount = Math.round(seconds / steps[i][1]) || 1;
        return future ? "in " + amount + " " + steps[i][2] : amount + " " + steps[i][2] + " ago";
      }
    }
    return new Date(when).toISOString().slice(0, 10);
  }

  function ageText(seconds) {
    seconds = Math.max(0, seconds);
    if (seconds < 60) return "< 1 min";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h";
    return Math.floor(seconds / 86400) + " d";
  }

  function tickTimes() {
    var now = Date.now() + skew;
    document.querySelectorAll("time[data-relative]").forEach(function (el) {
      var when = Date.parse(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      var seconds = (now - when) / 1000;
      var text = el.dataset.relative === "age" ? (el.dataset.prefix || "") + ageText(seconds) : relativeText(seconds, when);
      if (el.textContent !== text) el.textContent = text;
    });
  }
  setInterval(tickTimes, 15000);
  document.addEventListener("htmx:afterSettle", tickTimes);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) tickTimes(); });

  // --- Filter dropdowns: say what is applied, close on an outside click or Esc --------------
  function dropdownLabel(details) {
    var target = details.querySelector("[data-dropdown-label]");
    if (!target) return;
    var checked = Array.prototype.slice.call(details.querySelectorAll("input[type=checkbox]:checked"));
    if (!checked.length) target.textContent = target.dataset.none || "Any";
    else if (checked.length === 1) target.textContent = checked[0].dataset.label || checked[0].value;
    else target.textContent = checked.length + " " + (target.dataset.plural || "selected");
  }
  document.addEventListener("change", function (evt) {
    var details = evt.target.closest && evt.target.closest("details.dropdown");
    if (details) dropdownLabel(details);
  });
  document.addEventListener("click", function (evt) {
    document.querySelectorAll("details.dropdown[open]").forEach(function (details) {
      if (!details.contains(evt.target)) details.open = false;
    });
  });
  document.addEventListener("keydown", function (evt) {
    if (evt.key !== "Escape") return;
    document.querySelectorAll("details.dropdown[open]").forEach(function (details) {
      details.open = false;
      var summary = details.querySelector("summary");
      if (summary && details.contains(document.activeElement)) summary.focus();
    });
  });

  // --- Errors htmx does not swap ----------------------------------------------------------
  document.addEventListener("htmx:responseError", function (evt) {
    var status = evt.detail.xhr ? evt.detail.xhr.status : 0;
    if (status === 403) toast("Your role can view this task but not change it. Nothing was saved.");
    else if (status === 404) toast("That task no longer exists or is not yours to see.");
    else if (status === 400 || status === 413) toast("The request was refused (too large or malformed). Nothing was saved.");
    else toast("Something went wrong (HTTP " + status + "). Nothing was saved; try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    toast("Could not reach Taskdesk. Nothing was saved; check the connection and try again.");
  });

  document.addEventListener("DOMContentLoaded", tickTimes);
})();
