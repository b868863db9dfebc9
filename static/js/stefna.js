// Stefna's small progressive enhancements. No inline script: the CSP forbids it, so every
// behaviour is wired here from data-* attributes. Each page works without this file.
(function () {
  "use strict";
  // Strings not in a data-* attribute go through Django's JavaScript catalogue (/jsi18n/).
  var gettext = window.gettext || function (text) { return text; };

  function fill(template, values) {
    return Object.keys(values).reduce(function (text, key) { return text.split(key).join(values[key]); }, template || "");
  }

  // Adds `id` to an element's aria-describedby, or takes it out: an error shown by the
  // script is read with its field, and a hidden one no longer is.
  function describedBy(element, id, on) {
    var ids = (element.getAttribute("aria-describedby") || "").split(/\s+/).filter(function (each) { return each && each !== id; });
    if (on) ids.push(id);
    if (ids.length) element.setAttribute("aria-describedby", ids.join(" ")); else element.removeAttribute("aria-describedby");
  }

  function studio(form) {
    var input = form.querySelector("#id_image");
    var zone = form.querySelector("[data-dropzone]");
    var preview = form.querySelector("[data-preview]");
    var kept = form.querySelector("[data-kept-image]");
    // Which refusal below turned a file away, sent with the form so that, with no photo
    // left to send, the server's summary names it instead of asking for one (generation/images.py).
    var refused = form.querySelector("[data-image-refused]");
    var status = form.querySelector("[data-dropzone-status]");
    var imageError = form.querySelector("[data-image-error]");
    var promptField = form.querySelector("[data-prompt-field]");
    var prompt = form.querySelector("#id_prompt");
    var promptError = form.querySelector("[data-prompt-error]");
    var counter = form.querySelector("[data-counter]");
    var chosenStyle = form.querySelector("[data-chosen-style]");
    var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10) || 0;
    var maxPixels = parseInt(form.getAttribute("data-max-pixels"), 10) || 0;
    var fileNote = form.querySelector("[data-dropzone-file]");
    // The photo Create sends, as the dropzone shows it: a file chosen here (`file`, with
    // `url` its preview, or none where the browser can't draw it), or a kept or recent
    // photo (`url` only). A refused file puts it back instead of leaving nothing.
    var good = preview && !preview.hidden ? {file: null, url: preview.getAttribute("src"), status: status.textContent} : null;

    function showImageError(message) {
      if (!imageError) return;
      imageError.textContent = message || "";
      imageError.hidden = !message;
      if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    }

    function show(choice) {
      var drawn = !!(choice && choice.url);
      var undrawn = !!(choice && !choice.url);
      zone.classList.toggle("has-image", drawn);
      zone.classList.toggle("has-file", undrawn);
      if (drawn) { preview.src = choice.url; preview.hidden = false; } else { preview.hidden = true; preview.removeAttribute("src"); }
      if (fileNote) {
        fileNote.textContent = undrawn ? fill(form.getAttribute("data-msg-no-preview"), {FILE: choice.file.name}) : "";
        fileNote.hidden = !undrawn;
      }
      status.textContent = choice ? choice.status : "";
    }

    function putBack(file) {
      // A file input takes a FileList only from a DataTransfer.
      try {
        var transfer = new DataTransfer();
        transfer.items.add(file);
        input.files = transfer.files;
        return true;
      } catch (error) {
        return false;
      }
    }

    function refuse(message, reason, url) {
      // The server would say the same; saying it now saves the upload. The photo chosen
      // before (if any) stays, and is still what Create sends: emptying the input (the
      // only way to drop the refused file) would drop that one too, under its preview.
      if (url) URL.revokeObjectURL(url);
      showImageError(message);
      if (refused) refused.value = reason;
      if (!(good && good.file && putBack(good.file))) {
        input.value = "";
        if (good && good.file) good = null;
      }
      show(good);
    }

    function accept(file, url) {
      if (good && good.url && good.file && good.url !== url) URL.revokeObjectURL(good.url);
      // Digits grouped as the page's language writes them: "2,353 KB", "2.353 KB".
      var kilobytes = Math.max(1, Math.round(file.size / 1024)).toLocaleString(document.documentElement.lang || undefined);
      good = {file: file, url: url, status: file.name + " · " + kilobytes + " KB"};
      if (kept) kept.value = ""; // the new file replaces a photo kept from an earlier try
      if (refused) refused.value = "";
      form.querySelectorAll('input[name="source_generation"]').forEach(function (radio) { radio.checked = false; });
      showImageError("");
      show(good);
    }

    function checkFile(file) {
      if (!file) return;
      if (maxBytes && file.size > maxBytes) { refuse(form.getAttribute("data-msg-too-large"), "too_large"); return; }
      var heif = /\.(heic|heif)$/i.test(file.name) || /image\/hei[cf]/.test(file.type);
      var url = URL.createObjectURL(file);
      var probe = new Image();
      probe.onload = function () {
        var pixels = probe.naturalWidth * probe.naturalHeight;
        if (maxPixels && pixels > maxPixels) {
          refuse(
            fill(form.getAttribute("data-msg-too-many-pixels"), {WIDTH: probe.naturalWidth, HEIGHT: probe.naturalHeight}),
            "too_many_pixels:" + probe.naturalWidth + "x" + probe.naturalHeight,
            url
          );
          return;
        }
        accept(file, url);
      };
      probe.onerror = function () {
        if (heif) {
          // Most browsers can't draw HEIC (Safari can, above); the server converts it.
          // No preview then, but its name, and still a way to replace it.
          URL.revokeObjectURL(url);
          accept(file, null);
          return;
        }
        refuse(form.getAttribute("data-msg-not-image"), "not_image", url);
      };
      probe.src = url;
    }

    if (input && zone) {
      input.addEventListener("change", function () { checkFile(input.files && input.files[0]); });
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
        checkFile(files[0]);
      });
    }

    // A recent photo picked again replaces any file chosen before.
    form.querySelectorAll('input[name="source_generation"]').forEach(function (radio) {
      radio.addEventListener("change", function () {
        if (!radio.checked) return;
        var thumb = radio.parentNode.querySelector("img");
        if (input) input.value = "";
        if (kept) kept.value = "";
        if (refused) refused.value = "";
        showImageError("");
        if (good && good.url && good.file) URL.revokeObjectURL(good.url);
        good = {file: null, url: thumb.src, status: thumb.alt};
        show(good);
      });
    });

    // The photo is asked for (and sent) only for styles that transform one. Its inputs are
    // disabled, not emptied, so the photo is still there when a photo style is picked again.
    var photoInput = form.querySelector("[data-photo-input]");
    var noPhotoNote = form.querySelector("[data-no-photo-note]");
    function syncPhoto(chosen) {
      if (!photoInput || !noPhotoNote) return;
      var needed = !chosen || chosen.getAttribute("data-needs-photo") !== "false";
      photoInput.hidden = !needed;
      noPhotoNote.hidden = needed;
      photoInput.querySelectorAll("input").forEach(function (field) { field.disabled = !needed; });
      if (kept) kept.disabled = !needed;
      if (!needed) showImageError("");
    }

    // The prompt is shown (and sent) only for styles that need one.
    function syncPreset() {
      var chosen = form.querySelector('input[name="preset"]:checked');
      if (chosenStyle && chosen) chosenStyle.textContent = chosen.getAttribute("data-name");
      syncPhoto(chosen);
      if (!promptField || !prompt) return;
      var needed = chosen && chosen.getAttribute("data-requires-prompt") === "true";
      promptField.hidden = !needed;
      prompt.disabled = !needed;
      prompt.required = !!needed;
    }
    form.addEventListener("change", function (event) {
      if (!event.target || event.target.name !== "preset") return;
      syncPreset();
      // Arrow keys move the choice along the styles: the chosen card comes into sight (on
      // a phone it can sit off the side of its row, or under the Create bar). Its margins
      // for the sticky header and bar are in stefna.css.
      var card = event.target.closest(".preset-option");
      if (card && card.scrollIntoView) card.scrollIntoView({block: "nearest", inline: "nearest"});
    });
    syncPreset();

    // A style chosen before the page opened (a link's, or one kept after a refused submit)
    // can sit off to the side in a phone's sideways row of styles. Scroll that row, never
    // the page, so the chosen card is in sight when the person gets down to it.
    var preselected = form.querySelector('input[name="preset"]:checked');
    var row = preselected && preselected.closest(".preset-grid");
    if (row && row.scrollWidth > row.clientWidth) {
      var card = preselected.closest(".preset-option");
      var padding = parseFloat(window.getComputedStyle(row).scrollPaddingLeft) || 0;
      row.scrollLeft += card.getBoundingClientRect().left - row.getBoundingClientRect().left - padding;
    }

    function overBy() {
      if (!prompt) return 0;
      var max = parseInt(prompt.getAttribute("data-counter-max"), 10);
      return prompt.disabled ? 0 : Math.max(0, prompt.value.length - max);
    }
    function count() {
      if (!prompt || !counter) return;
      var max = parseInt(prompt.getAttribute("data-counter-max"), 10);
      var used = prompt.value.length;
      counter.textContent = fill(form.getAttribute("data-msg-counter"), {COUNT: used, LIMIT: max});
      counter.classList.toggle("is-near", used > max * 0.9 && used <= max);
      counter.classList.toggle("is-over", used > max);
      if (!promptError) return;
      if (used > max) {
        promptError.textContent = fill(form.getAttribute("data-msg-prompt-over"), {COUNT: used, LIMIT: max});
        promptError.hidden = false;
        promptError.setAttribute("data-client", "");
        prompt.setAttribute("aria-invalid", "true");
        describedBy(prompt, promptError.id, true);
      } else if (promptError.hasAttribute("data-client")) {
        // Only a message this script showed goes away by itself; the server's stays.
        promptError.hidden = true;
        promptError.removeAttribute("data-client");
        prompt.removeAttribute("aria-invalid");
        describedBy(prompt, promptError.id, false);
      }
    }
    if (prompt) prompt.addEventListener("input", count);
    count();

    // A form that can only come back refused (no style, or a style's prompt left empty)
    // is stopped here, at the field to fix: the server would say the same after the whole
    // photo went up, and on a phone the prompt's field is a long scroll below the style.
    var styles = form.querySelector("#styles");
    var presetError = form.querySelector("[data-preset-error]");
    function showPresetError(message) {
      if (!presetError || !styles) return;
      presetError.textContent = message || "";
      presetError.hidden = !message;
      describedBy(styles, presetError.id, !!message);
    }
    form.addEventListener("change", function (event) {
      if (event.target && event.target.name === "preset") showPresetError("");
    });
    // focus() alone scrolls only a field wholly out of sight: one peeking out under the
    // phone's Create bar stayed there, covered.
    function bringToSight(field, where) {
      field.focus({preventScroll: true});
      field.scrollIntoView({block: where});
    }
    function refusedHere() {
      if (!form.querySelector('input[name="preset"]:checked') && styles) {
        showPresetError(form.getAttribute("data-msg-no-style"));
        bringToSight(styles, "start");
        return true;
      }
      if (prompt && promptError && !prompt.disabled && prompt.required && !prompt.value.trim()) {
        promptError.textContent = form.getAttribute("data-msg-needs-prompt");
        promptError.hidden = false;
        promptError.setAttribute("data-client", ""); // typing takes it away (count)
        prompt.setAttribute("aria-invalid", "true");
        describedBy(prompt, promptError.id, true);
        bringToSight(prompt, "center");
        return true;
      }
      return false;
    }

    // One click, one generation: stop a double submit from charging twice.
    form.addEventListener("submit", function (event) {
      if (overBy() > 0) {
        event.preventDefault();
        prompt.focus();
        return;
      }
      if (refusedHere()) {
        event.preventDefault();
        return;
      }
      var button = form.querySelector('button[type="submit"]');
      if (button) {
        window.setTimeout(function () {
          button.disabled = true;
          button.textContent = form.getAttribute("data-msg-uploading");
        }, 0);
      }
    });

    // Finish sticks beside the styles on a desktop, and the Create bar to the bottom of the
    // window: stefna.css needs Finish's height to stick it by its bottom when it is taller
    // than the window has room for, and the bar's to scroll a focused field clear of it.
    var finish = form.querySelector("[data-studio-finish]");
    var bar = form.querySelector("[data-submit-bar]");
    if (finish && bar && window.ResizeObserver) {
      var observer = new window.ResizeObserver(function () {
        document.documentElement.style.setProperty("--studio-finish-height", finish.offsetHeight + "px");
        document.documentElement.style.setProperty("--studio-bar-height", bar.offsetHeight + "px");
      });
      observer.observe(finish);
      observer.observe(bar);
    }

    // After a refused submit, focus goes to the summary of what to fix.
    var summary = form.querySelector("[data-error-summary]");
    if (summary) summary.focus();
  }

  // Before/after: a range input (keyboard and pointer for free) moves the split.
  function compare(root) {
    var range = root.querySelector("[data-compare-range]");
    if (!range) return;
    root.classList.add("is-enhanced");
    function update() { root.style.setProperty("--split", range.value + "%"); }
    range.addEventListener("input", update);
    // A pointer anywhere on the picture sets the split exactly there, and drags it.
    var dragging = false;
    function follow(event) {
      var box = root.getBoundingClientRect();
      var value = Math.round(((event.clientX - box.left) / box.width) * 100);
      range.value = String(Math.max(0, Math.min(100, value)));
      update();
    }
    root.addEventListener("pointerdown", function (event) {
      dragging = true;
      if (root.setPointerCapture) root.setPointerCapture(event.pointerId);
      range.focus({preventScroll: true});
      follow(event);
    });
    root.addEventListener("pointermove", function (event) { if (dragging) follow(event); });
    ["pointerup", "pointercancel"].forEach(function (name) {
      root.addEventListener(name, function () { dragging = false; });
    });
    update();
  }

  // The tab title tells how things stand while you look elsewhere.
  var baseTitle = document.title;
  function syncTitle() {
    var cards = document.querySelectorAll("[data-testid=status-card], [data-testid=history-item]");
    if (!cards.length) return;
    var running = 0, done = 0;
    cards.forEach(function (card) {
      var state = card.getAttribute("data-status");
      if (state === "queued" || state === "running") running += 1;
      if (state === "succeeded") done += 1;
    });
    var body = document.body;
    var site = body.getAttribute("data-site-name") || "Stefna";
    if (running) {
      document.title = fill(body.getAttribute("data-title-running"), {COUNT: running}) + " · " + site;
    } else if (document.querySelector("[data-testid=status-card][data-status=succeeded]")) {
      document.title = body.getAttribute("data-title-done") + " · " + baseTitle;
    } else {
      document.title = baseTitle;
    }
  }

  // A form that starts a purchase is sent once: a double click on "Buy" made two
  // checkouts, the second left pending until it expired. Back to the page, when the
  // browser kept it, offers the form again.
  function submitOnce(form) {
    form.addEventListener("submit", function (event) {
      if (form.hasAttribute("data-sent")) {
        event.preventDefault();
        return;
      }
      form.setAttribute("data-sent", "");
      form.querySelectorAll('button[type="submit"]').forEach(function (button) {
        button.setAttribute("aria-disabled", "true");
      });
    });
  }
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-submit-once][data-sent]").forEach(function (form) {
      form.removeAttribute("data-sent");
      form.querySelectorAll('button[aria-disabled="true"]').forEach(function (button) {
        button.removeAttribute("aria-disabled");
      });
    });
  });

  function autosubmit(form) {
    var button = form.querySelector("[data-autosubmit-button]");
    if (button) button.hidden = true;
    form.addEventListener("change", function () { form.requestSubmit ? form.requestSubmit() : form.submit(); });
  }

  // The language switcher returns to the page it was used on by its Referer, which never
  // holds the #fragment (/account/#credits lands on /account/). When there is one, the
  // address is sent as `next`, which the server accepts only on this site, as it does the
  // Referer. Without this file the switch still works and only the fragment is lost.
  function keepFragment(form) {
    form.addEventListener("submit", function () {
      if (!window.location.hash) return;
      var next = form.querySelector('input[name="next"]');
      if (!next) {
        next = document.createElement("input");
        next.type = "hidden";
        next.name = "next";
        form.appendChild(next);
      }
      next.value = window.location.pathname + window.location.search + window.location.hash;
    });
  }

  // "Copy token": the result is said in the status line beside it (role=status), success or
  // not. A refused clipboard (permission denied) did nothing visible; now the token's text
  // is selected, ready to copy by hand, and the line says so.
  function copyButtons(root) {
    if (!navigator.clipboard) return;
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      var status = document.getElementById(button.getAttribute("data-copy-status") || "");
      var source = document.getElementById(button.getAttribute("data-copy-source") || "");
      button.hidden = false;
      button.addEventListener("click", function () {
        function say(text, failed) {
          if (!status) return;
          status.textContent = text;
          status.classList.toggle("is-error", failed);
        }
        navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
          say(gettext("Copied!"), false);
        }, function () {
          if (source) {
            var range = document.createRange();
            range.selectNodeContents(source);
            var selection = window.getSelection();
            selection.removeAllRanges();
            selection.addRange(range);
          }
          say(gettext("Couldn’t copy to the clipboard. The token is selected: copy it yourself."), true);
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

  // The ⋯ menus are <details>: they open and close by their own button only. Escape, a
  // click outside and opening another menu close them too, as a menu does; listened for
  // on the document, so menus htmx swaps in behave the same.
  function closeMenus(except) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      if (menu !== except) menu.open = false;
    });
  }
  document.addEventListener("click", function (event) {
    closeMenus(event.target.closest ? event.target.closest("details[data-menu]") : null);
  });
  // A menu opened near the window's bottom ran below the fold: with no room below and
  // room above, it opens upwards; with neither, it is scrolled into view.
  document.addEventListener("toggle", function (event) {
    var menu = event.target;
    if (!menu.matches || !menu.matches("details[data-menu]")) return;
    menu.classList.remove("opens-up");
    if (!menu.open) return;
    var panel = menu.querySelector(".menu-panel");
    if (!panel) return;
    var below = panel.getBoundingClientRect();
    if (below.bottom <= window.innerHeight) return;
    if (menu.getBoundingClientRect().top - below.height >= 0) menu.classList.add("opens-up");
    else panel.scrollIntoView({block: "nearest"});
  }, true);
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var menu = document.activeElement && document.activeElement.closest("details[data-menu][open]");
    closeMenus(null);
    if (menu) menu.querySelector("summary").focus();
  });

  // Elapsed time on a running card ticks here, so a card answered from the browser's cache
  // (a 304) or refreshed only when something changed still counts up.
  function tickElapsed() {
    document.querySelectorAll("[data-elapsed-since]").forEach(function (element) {
      var since = parseInt(element.getAttribute("data-elapsed-since"), 10);
      if (isNaN(since)) return;
      var seconds = Math.max(0, Math.floor(Date.now() / 1000 - since));
      var minutes = Math.floor(seconds / 60);
      element.textContent = minutes
        ? fill(element.getAttribute("data-format-minutes"), {MINUTES: minutes, SECONDS: seconds % 60})
        : fill(element.getAttribute("data-format-seconds"), {SECONDS: seconds});
    });
  }

  // Live status: a running card listens to its own event stream (/g/<id>/events/), whose
  // events carry the card itself, and swaps each one in: a change reaches the page with no
  // fetch after it. The card's own timed poll (hx-trigger) is the fallback: skipped while
  // the stream is connected, back when EventSource is missing or keeps failing, or under
  // a server that cannot stream (it answers 204).
  var live = {source: null, connected: false};
  function stopLive() {
    if (live.source) live.source.close();
    live.source = null;
    live.connected = false;
    document.body.removeAttribute("data-live");
  }
  function startLive() {
    var card = document.querySelector("[data-testid=status-card][data-events-url]");
    if (!card || live.source || !window.EventSource || !window.htmx) return;
    var failures = 0;
    var source = new EventSource(card.getAttribute("data-events-url"));
    live.source = source;
    source.addEventListener("open", function () {
      failures = 0;
      live.connected = true;
      document.body.setAttribute("data-live", "connected");
    });
    source.addEventListener("message", function (event) {
      failures = 0;
      // How many changes arrived (the browser tests count them).
      document.body.setAttribute("data-live-events", String((parseInt(document.body.getAttribute("data-live-events"), 10) || 0) + 1));
      var current = document.querySelector("[data-testid=status-card][data-card-url]");
      if (!current) { stopLive(); return; }
      // An event's id is the generation's version: a card already showing it is current.
      if (event.lastEventId && event.lastEventId === current.getAttribute("data-version")) return;
      noteFocusInCard();
      // The card itself (with the header's balance, out of band, once it is final).
      window.htmx.swap(current, event.data, {swapStyle: "outerHTML", swapDelay: 0, settleDelay: 20});
      var swapped = document.querySelector("[data-testid=status-card]");
      if (!swapped || !swapped.hasAttribute("data-card-url")) stopLive();  // final: no more changes
    });
    source.addEventListener("error", function () {
      live.connected = false;
      document.body.removeAttribute("data-live");
      failures += 1;
      // The browser retries by itself; a closed stream (a 4xx, a 204 once it ended) or
      // repeated failures hand the card back to polling.
      if (source.readyState === window.EventSource.CLOSED || failures >= 3) stopLive();
    });
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    var element = event.detail && event.detail.elt;
    // The card's timed poll is skipped while the stream is connected.
    if (live.connected && element && element.matches && element.matches("[data-testid=status-card]")) {
      event.preventDefault();
    }
  });

  // A running history card asks for itself again every few seconds. While nothing changed
  // the server answers 304 and the browser hands htmx the same card from its cache:
  // swapping that in again would only take the keyboard's focus from it.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (!target || !target.matches || !target.matches("[data-testid=history-item][data-version]")) return;
    var answer = /data-version="(\d+)"/.exec(event.detail.serverResponse || "");
    if (answer && answer[1] === target.getAttribute("data-version")) event.detail.shouldSwap = false;
  });

  // A keyboard user on the card's Cancel button loses it when the card ends (the button
  // goes with the old card): their place moves to the new card's title instead of the
  // top of the page. While it runs, htmx keeps focus on the button itself (same id).
  var focusWasInCard = false;
  function noteFocusInCard() {
    var card = document.querySelector("[data-testid=status-card]");
    focusWasInCard = !!(card && document.activeElement && card.contains(document.activeElement));
  }
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (target && target.matches && target.matches("[data-testid=status-card]")) noteFocusInCard();
  });
  function restoreFocusToCard(card) {
    if (!focusWasInCard) return;
    focusWasInCard = false;
    var lost = !document.activeElement || document.activeElement === document.body;
    var title = card && card.querySelector(".status-title");
    if (lost && title) title.focus({preventScroll: true});
  }

  // A keyboard user's place survives a swap that takes the focused control away (deleting
  // an image or a generation from its "⋯" menu): focus moves to what took its place, or
  // the next item, or the one before, never back to the top of the page. (A swap that
  // brings the control back under the same id keeps focus on it by itself: htmx.)
  var FOCUSABLE = 'a[href], button:not([disabled]), summary, input:not([type="hidden"]):not([disabled]), select, textarea';
  var swapPlace = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail && event.detail.target;
    swapPlace = null;
    if (!target || !target.parentElement || target.matches("[data-testid=status-card]")) return;
    if (!document.activeElement || !target.contains(document.activeElement)) return;
    swapPlace = {parent: target.parentElement, before: target.previousElementSibling, after: target.nextElementSibling};
  });
  function focusFirstIn(element) {
    var found = element && (element.matches(FOCUSABLE) ? element : element.querySelector(FOCUSABLE));
    if (found) found.focus();
    return !!found;
  }
  // A swap that left nothing in its place settles nothing, so htmx:afterSettle never
  // comes; htmx:afterOnLoad does (on the nearest element still in the page).
  document.addEventListener("htmx:afterOnLoad", function () { restoreSwapPlace(); });
  function restoreSwapPlace() {
    var place = swapPlace;
    swapPlace = null;
    if (!place || (document.activeElement && document.activeElement !== document.body)) return;
    // What the swap put in the old place lies between its neighbours.
    var element = place.before ? place.before.nextElementSibling : place.parent.firstElementChild;
    for (; element && element !== place.after; element = element.nextElementSibling) {
      if (focusFirstIn(element)) return;
    }
    if (focusFirstIn(place.after) || focusFirstIn(place.before)) return;
    var heading = place.parent.closest("[data-testid=status-card]");
    heading = heading ? heading.querySelector(".status-title") : document.querySelector("main h1");
    if (heading) {
      if (!heading.hasAttribute("tabindex")) heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
  }

  // Announce status changes of the polled card (see detail.html).
  var lastStatus = null;
  document.addEventListener("htmx:afterSettle", function () {
    restoreSwapPlace();
    syncTitle();
    tickElapsed();
    document.querySelectorAll("[data-compare]").forEach(compare);
    var card = document.querySelector("[data-testid=status-card]");
    restoreFocusToCard(card);
    var announcer = document.querySelector("[data-status-announcer]");
    if (!card || !announcer) return;
    var status = card.getAttribute("data-status");
    if (status !== lastStatus) {
      var pill = card.querySelector("[data-testid=status]");
      announcer.textContent = (announcer.getAttribute("data-prefix") || "Status:") + " " + (pill ? pill.textContent : status);
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
    document.querySelectorAll("form[data-submit-once]").forEach(submitOnce);
    document.querySelectorAll("[data-keep-fragment]").forEach(keepFragment);
    document.querySelectorAll("[data-compare]").forEach(compare);
    syncTitle();
    copyButtons(document);
    startLive();
    if (document.querySelector("[data-elapsed-since]")) window.setInterval(tickElapsed, 1000);
  });
})();
