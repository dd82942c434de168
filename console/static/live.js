// Live pages: the server's change notices over SSE (/stream). On each notice the page asks the
// server for itself again and swaps in the parts marked data-live (a form being filled in is
// never among them). The alarm count in each notice goes to alarm.js (event "tuquan:alarms").
//
// For tests and people: #live[data-state] is connecting | open | closed, #live[data-notices]
// counts the notices received, body[data-refreshed] counts the refreshes done.
"use strict";

(function () {
  const live = document.getElementById("live");
  localTimes(document);
  if (!live) {
    return; // not logged in: nothing is live
  }
  let notices = 0;
  let hellos = 0;
  let timer = null;
  let busy = false;
  let again = false;
  let source = null;

  function setState(state) {
    live.dataset.state = state;
    for (const el of live.querySelectorAll(".live-text")) {
      el.hidden = el.dataset.for !== state;
    }
  }

  function setAlarms(count) {
    if (typeof count === "number" && count >= 0) {
      document.body.dataset.alarms = String(count);
      document.dispatchEvent(new CustomEvent("tuquan:alarms", { detail: count }));
    }
  }

  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const response = await fetch(location.href, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      if (response.redirected && new URL(response.url).pathname === "/login") {
        location.reload(); // the session ended
        return;
      }
      if (!response.ok) {
        return;
      }
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const el of document.querySelectorAll("[data-live][id]")) {
        const replacement = fresh.getElementById(el.id);
        if (replacement) {
          el.replaceWith(replacement);
          localTimes(replacement);
        }
      }
      const count = Number(document.body.dataset.refreshed || "0") + 1;
      document.body.dataset.refreshed = String(count);
    } catch (err) {
      // the server is away: the next notice (or reconnect) refreshes again
    } finally {
      busy = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  }

  function schedule() {
    if (!document.querySelector("[data-live]")) {
      return;
    }
    clearTimeout(timer);
    timer = setTimeout(refresh, 100);
  }

  // A hub's health comes every 30 s from each hub: with thousands of hubs, refreshing on each
  // would keep the browser and the server busy. Hub notices refresh at most every few seconds;
  // alerts and commands at once.
  const HUB_REFRESH_MS = 5000;
  let hubTimer = null;
  function scheduleHubs() {
    if (hubTimer === null) {
      hubTimer = setTimeout(function () {
        hubTimer = null;
        schedule();
      }, HUB_REFRESH_MS);
    }
  }

  function connect() {
    source = new EventSource("/stream");
    source.addEventListener("open", function () {
      setState("open");
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        setState("closed");
        setTimeout(connect, 5000);
      } else {
        setState("connecting");
      }
    });
    source.addEventListener("hello", function (event) {
      hellos += 1;
      setState("open");
      setAlarms(JSON.parse(event.data).alarms);
      if (hellos > 1) {
        schedule(); // reconnected: catch up with what changed meanwhile
      }
    });
    source.addEventListener("notice", function (event) {
      const notice = JSON.parse(event.data);
      notices += 1;
      live.dataset.notices = String(notices);
      live.dataset.last = notice.type || "";
      setAlarms(notice.alarms);
      if (notice.type === "hub") {
        scheduleHubs();
      } else {
        schedule();
      }
    });
  }

  connect();
})();

// Stored times are UTC; show them in the browser's time zone and language (the UTC text stays
// in the title).
function localTimes(root) {
  const lang = document.documentElement.lang || undefined;
  for (const el of root.querySelectorAll("time[datetime]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (!isNaN(at.getTime())) {
      el.title = el.getAttribute("datetime");
      el.textContent = at.toLocaleString(lang);
    }
  }
}
