// nightshift dashboard: the only script. It asks before forms marked data-confirm are
// sent and makes the "select all" box of the dead letters table work. Every page works
// without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });
  document.querySelectorAll("input.select-all").forEach(function (box) {
    box.addEventListener("change", function () {
      var form = box.closest("form");
      form.querySelectorAll("input.pick").forEach(function (p) { p.checked = box.checked; });
    });
  });
});
