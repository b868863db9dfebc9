// The share page's "Share" button: the phone's share sheet (Web Share API) where there
// is one, else the link copied to the clipboard. Loaded as a file: the CSP forbids
// inline script. Without JavaScript the button stays hidden and the link field remains.
(function () {
  "use strict";

  function selectField(field) {
    if (!field) return;
    field.focus();
    field.select();
  }

  function wire(button) {
    var url = button.getAttribute("data-share-url");
    var title = button.getAttribute("data-share-title") || document.title;
    var status = document.querySelector("[data-share-status]");
    var field = document.querySelector("[data-share-link]");
    var canShare = typeof navigator.share === "function" && (!navigator.canShare || navigator.canShare({ url: url }));
    var canCopy = !!(navigator.clipboard && navigator.clipboard.writeText);
    if (!canShare && !canCopy) return; // the link field is there to copy by hand
    button.hidden = false;

    function say(text) {
      if (status) status.textContent = text;
    }

    button.addEventListener("click", function () {
      if (canShare) {
        navigator.share({ title: title, url: url }).catch(function (error) {
          // AbortError: the person closed the share sheet; nothing to say.
          if (error && error.name !== "AbortError" && canCopy) copy();
        });
        return;
      }
      copy();
    });

    function copy() {
      navigator.clipboard.writeText(url).then(
        function () { say(button.getAttribute("data-share-copied")); },
        function () { say(button.getAttribute("data-share-failed")); selectField(field); }
      );
    }
  }

  function start() {
    var buttons = document.querySelectorAll("[data-share-url]");
    for (var i = 0; i < buttons.length; i++) wire(buttons[i]);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
