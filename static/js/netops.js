// Behaviour every page shares, driven by data-* attributes so that templates carry no inline script
// or event handler (the Content-Security-Policy forbids both).
//
// data-confirm="Question?" on a button or link: ask before it acts; "Cancel" stops the click. The
// question is read as text from an auto-escaped attribute and shown by window.confirm, so a value in
// it (a key name, a title) can never become code.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target.closest("[data-confirm]") : null;
    if (target && !window.confirm(target.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
})();
