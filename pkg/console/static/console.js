// keyward console: the little the pages need beyond HTML. The secret is
// copied to the clipboard on request and never stored anywhere else.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    if (!navigator.clipboard) {
      return; // the secret stays selectable by hand
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) {
        return;
      }
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        button.textContent = "Copied";
        button.classList.add("done");
      }, function () {
        button.textContent = "Copy failed: select the text";
      });
    });
  });

  // A browser key needs allowed origins.
  var browser = document.getElementById("browser");
  var origins = document.getElementById("allowed_origins");
  var required = document.getElementById("origins-required");
  if (browser && origins) {
    var sync = function () {
      origins.required = browser.checked;
      if (required) {
        required.hidden = !browser.checked;
      }
    };
    browser.addEventListener("change", sync);
    sync();
  }

  // Regenerate: the hours apply only when the old key keeps working.
  var hours = document.querySelector("input[name=hours]");
  var modes = document.querySelectorAll("input[name=mode]");
  if (hours && modes.length) {
    var syncHours = function () {
      var now = document.querySelector("input[name=mode][value=now]");
      hours.disabled = !!(now && now.checked);
    };
    modes.forEach(function (m) { m.addEventListener("change", syncHours); });
    syncHours();
  }
});
