// The few lines htmx does not cover on the chat page: Enter to send, clearing the box after a send,
// and auto-scroll that follows new text only while the user is at the bottom.
(function () {
  "use strict";
  function scroller() { return document.getElementById("scroller"); }
  var stick = true;

  document.addEventListener("scroll", function (event) {
    var el = scroller();
    if (event.target === el) {
      stick = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    }
  }, true);

  function followIfStuck() {
    var el = scroller();
    if (el && stick) { el.scrollTop = el.scrollHeight; }
  }

  document.addEventListener("keydown", function (event) {
    if (event.target.id === "message-input" && event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      var form = document.getElementById("composer");
      if (event.target.value.trim() && form.querySelector("#run-indicator").dataset.state !== "running") {
        form.requestSubmit();
      }
    }
  });

  document.addEventListener("htmx:wsAfterSend", function (event) {
    var input = document.getElementById("message-input");
    if (input && event.target.id === "composer") { input.value = ""; stick = true; }
  });

  document.addEventListener("htmx:wsAfterMessage", followIfStuck);
  document.addEventListener("DOMContentLoaded", function () { followIfStuck(); });
})();
