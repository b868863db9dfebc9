// Stefna's small progressive enhancements. No inline script: the CSP forbids it, so every
// behaviour is wired here from data-* attributes. Each page works without this file.
(function () {
  "use strict";
  // Strings go through Django's JavaScript catalogue (/jsi18n/, loaded before this file).
  var gettext = window.gettext || function (text) { return text; };
  var format = window.interpolate || function (text, values) {
    return text.replace(/%\((\w+)\)s/g, function (_, name) { return values[name]; });
  };

  function studio(form) {
    var input = form.querySelector("#id_image");
    var zone = form.querySelector("[data-dropzone]");
    var preview = form.querySelector("[data-preview]");
    var kept = form.querySelector("[data-kept-image]");
    var status = form.querySelector("[data-dropzone-status]");
    var promptField = form.querySelector("[data-prompt-field]");
    var prompt = form.querySelector("#id_prompt");
    var counter = form.querySelector("[data-counter]");
    var objectUrl = null;

    function showFile(file) {
      if (!file) return;
      if (!/^image\//.test(file.type)) {
        status.textContent = gettext("That file isn't an image. Choose a JPEG, PNG or WebP photo.");
        return;
      }
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = URL.createObjectURL(file);
      preview.src = objectUrl;
      preview.hidden = false;
      zone.classList.add("has-image");
      if (kept) kept.value = ""; // the new file replaces a photo kept from an earlier try
      status.textContent = file.name + " · " + Math.max(1, Math.round(file.size / 1024)) + " KB";
    }

    if (input && zone) {
      input.addEventListener("change", function () { showFile(input.files && input.files[0]); });
      ["dragenter", "dragover"].forEach(function (name) {
        zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("is-dragging"); });
      });
      ["dragleave", "dragend", "drop"].forEach(function (name) {
        zone.addEventListener(name, function () { zone.classList.remove("is-dragging"); });
      });
      zone.addEventListener("drop", function (event) {
        event.preventDefault();
        var files = event.dataTransfer && event.dataTransfer.files;
        if (!files || !files.length) return;
        input.files = files; // a DataTransfer's FileList can be assigned to a file input
        showFile(files[0]);
      });
    }

    // The prompt is shown (and sent) only for styles that need one.
    function syncPrompt() {
      if (!promptField || !prompt) return;
      var chosen = form.querySelector('input[name="preset"]:checked');
      var needed = chosen && chosen.getAttribute("data-requires-prompt") === "true";
      promptField.hidden = !needed;
      prompt.disabled = !needed;
      prompt.required = !!needed;
    }
    form.addEventListener("change", function (event) {
      if (event.target && event.target.name === "preset") syncPrompt();
    });
    syncPrompt();

    function count() {
      if (!prompt || !counter) return;
      var max = parseInt(prompt.getAttribute("data-counter-max"), 10);
      var used = prompt.value.length;
      counter.textContent = format(gettext("%(used)s / %(max)s characters"), { used: used, max: max }, true);
      counter.classList.toggle("is-near", used > max * 0.9);
    }
    if (prompt) prompt.addEventListener("input", count);
    count();

    // One click, one generation: stop a double submit from charging twice.
    form.addEventListener("submit", function () {
      var button = form.querySelector('button[type="submit"]');
      if (button) {
        window.setTimeout(function () {
          button.disabled = true;
          button.textContent = gettext("Uploading…");
        }, 0);
      }
    });
  }

  function autosubmit(form) {
    var button = form.querySelector("[data-autosubmit-button]");
    if (button) button.hidden = true;
    form.addEventListener("change", function () { form.requestSubmit ? form.requestSubmit() : form.submit(); });
  }

  function copyButtons(root) {
    if (!navigator.clipboard) return;
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var label = button.textContent;
        navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
          button.textContent = gettext("Copied!");
          window.setTimeout(function () { button.textContent = label; }, 1600);
        });
      });
    });
  }

  // A missing preset thumbnail shows its gradient frame instead of a broken-image icon.
  function markBroken(img) { img.classList.add("is-broken"); }
  document.addEventListener("error", function (event) {
    var target = event.target;
    if (target && target.tagName === "IMG" && target.closest(".preset-thumb")) markBroken(target);
  }, true);

  // Announce status changes of the polled card (see detail.html).
  var lastStatus = null;
  document.addEventListener("htmx:afterSettle", function () {
    var card = document.querySelector("[data-testid=status-card]");
    var announcer = document.querySelector("[data-status-announcer]");
    if (!card || !announcer) return;
    var status = card.getAttribute("data-status");
    if (status !== lastStatus) {
      var pill = card.querySelector("[data-testid=status]");
      announcer.textContent = format(gettext("Status: %(status)s"), { status: pill ? pill.textContent : status }, true);
      lastStatus = status;
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var card = document.querySelector("[data-testid=status-card]");
    if (card) lastStatus = card.getAttribute("data-status");
    document.querySelectorAll(".preset-thumb img").forEach(function (img) {
      if (img.complete && img.naturalWidth === 0) markBroken(img);
    });
    document.querySelectorAll("[data-studio-form]").forEach(studio);
    document.querySelectorAll("[data-autosubmit]").forEach(autosubmit);
    copyButtons(document);
  });
})();
