// trunkline status page: refreshes the node and carrier tables every 5 s without reloading the
// page, by fetching this same page and swapping the two sections in. Nothing else runs here.
(function () {
  "use strict";
  async function refresh() {
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      // Logged out (redirected to the login form) or trunkline down: keep what is shown.
      if (response.redirected || !response.ok) {
        return;
      }
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const id of ["nodes", "carriers", "refreshed"]) {
        const next = fresh.getElementById(id);
        const shown = document.getElementById(id);
        if (next && shown) {
          shown.replaceWith(next);
        }
      }
    } catch (e) {
      // The next tick tries again.
    }
  }
  window.setInterval(refresh, 5000);
})();
