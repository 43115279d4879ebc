// The colour theme: "auto" follows the system (prefers-color-scheme), "light" and "dark" are the
// person's choice, remembered per browser under the same localStorage key Django's admin uses
// ("theme"), so the desk and the admin agree. base.html applies a stored choice in an inline
// script before the first paint (no flash); this file runs the toggle in the top bar.
(function () {
  "use strict";
  var LABELS = { auto: "Auto", light: "Light", dark: "Dark" };
  var ICONS = { auto: "◐", light: "☀", dark: "☾" };
  var system = window.matchMedia("(prefers-color-scheme: dark)");

  function stored() {
    try {
      var value = localStorage.getItem("theme");
      return value === "light" || value === "dark" ? value : "auto";
    } catch (e) {
      return "auto"; // storage blocked: the system's setting, this page only
    }
  }

  function apply(mode) {
    var root = document.documentElement;
    if (mode === "auto") delete root.dataset.theme;
    else root.dataset.theme = mode;
    try {
      localStorage.setItem("theme", mode);
    } catch (e) {
      /* not remembered, still applied */
    }
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    var shown = mode === "auto" ? (system.matches ? "dark" : "light") : mode;
    button.querySelector(".theme-icon").textContent = ICONS[mode];
    button.querySelector(".theme-label").textContent = LABELS[mode];
    button.dataset.mode = mode;
    button.setAttribute(
      "aria-label",
      "Colour theme: " + (mode === "auto" ? "follows the system (now " + shown + ")" : LABELS[mode].toLowerCase()) + ". Change"
    );
    button.title = mode === "auto" ? "Theme follows the system setting; click to choose" : LABELS[mode] + " theme; click to change";
  }

  // Every click changes what is seen: from auto, the opposite of the system's theme first.
  function next(mode) {
    var order = system.matches ? ["auto", "light", "dark"] : ["auto", "dark", "light"];
    return order[(order.indexOf(mode) + 1) % order.length];
  }

  document.addEventListener("DOMContentLoaded", function () {
    apply(stored());
    var button = document.getElementById("theme-toggle");
    if (button) {
      button.addEventListener("click", function () {
        apply(next(button.dataset.mode || "auto"));
      });
    }
    // The system switching (e.g. at dusk) updates the label of an "auto" toggle.
    system.addEventListener("change", function () {
      apply(stored());
    });
  });
})();
