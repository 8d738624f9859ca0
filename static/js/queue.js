// The change queue: when the queue's websocket says a change was created or moved, reload the table
// with this page's filters (the #queue-refresh element listens for "change-updated").
(function () {
  "use strict";
  document.addEventListener("htmx:wsAfterMessage", function () {
    htmx.trigger(document.body, "change-updated");
  });
})();
