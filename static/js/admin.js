// Stefna's admin: a scrollable region that holds nothing focusable gets tabindex, so a
// keyboard can scroll it too (axe: scrollable-region-focusable).
(function () {
  "use strict";
  function mark() {
    document.querySelectorAll(".inline-group .wrapper, .stefna-json, #changelist .results").forEach(function (el) {
      var scrolls = el.scrollWidth > el.clientWidth || el.scrollHeight > el.clientHeight;
      if (scrolls && !el.hasAttribute("tabindex")) el.setAttribute("tabindex", "0");
    });
  }
  document.addEventListener("DOMContentLoaded", mark);
  window.addEventListener("resize", mark);
})();
