// fleetguard dashboard: live device state updates over server-sent events.
// No framework; no eval; loaded from this origin only (the CSP allows nothing else).
(function () {
  "use strict";
  var STATES = ["registered", "active", "quarantined", "suspended", "decommissioned"];

  function announce(text) {
    var log = document.getElementById("live-log");
    if (!log) { return; }
    var p = document.createElement("p");
    p.textContent = text;
    log.appendChild(p);
    window.setTimeout(function () { p.remove(); }, 8000);
  }

  function applyState(deviceId, state) {
    if (STATES.indexOf(state) < 0) { return; }
    var nodes = document.querySelectorAll("[data-live-state]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      if (el.getAttribute("data-live-state") !== deviceId) { continue; }
      el.textContent = state;
      for (var j = 0; j < STATES.length; j++) { el.classList.remove("state-" + STATES[j]); }
      if (el.classList.contains("badge")) { el.classList.add("state-" + state); }
      el.classList.remove("flash");
      void el.offsetWidth;
      el.classList.add("flash");
    }
  }

  // On a device's own page, a change to that device re-renders the page's content from the
  // server (state, allowed actions, certificate status), through htmx: no eval, same origin.
  function refreshDevicePage(deviceId) {
    var detail = document.getElementById("device-detail");
    if (!detail || detail.getAttribute("data-device-page") !== deviceId || !window.htmx) {
      return;
    }
    window.htmx.ajax("GET", window.location.pathname,
                     { target: "#device-detail", select: "#device-detail", swap: "outerHTML" });
  }

  // On the overview, the counts by state are re-rendered by the server after a change.
  function refreshCounts() {
    if (!document.getElementById("state-tiles") || !window.htmx) { return; }
    window.htmx.ajax("GET", "/", { target: "#state-tiles", select: "#state-tiles",
                                   swap: "outerHTML" });
  }

  function start() {
    if (!window.EventSource || !document.querySelector("[data-live-state], [data-live-counts]")) {
      return;
    }
    var source = new EventSource("/events");
    source.addEventListener("device", function (ev) {
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      if (data.kind === "state") {
        applyState(data.device_id, data.state);
        refreshDevicePage(data.device_id);
        refreshCounts();
        announce("Device " + String(data.device_id).slice(0, 8) + "… is now " + data.state +
                 " (" + data.actor + ")");
      } else if (data.kind === "revoke") {
        announce("Certificate " + String(data.serial).slice(0, 12) + "… revoked (" + data.actor + ")");
        refreshDevicePage(data.device_id);
      }
    });
    source.addEventListener("error", function () {
      // The server closes each stream after a minute and the browser reconnects by itself;
      // a closed source (e.g. session expired) is not retried.
      if (source.readyState === EventSource.CLOSED) { announce("Live updates stopped; reload the page."); }
    });
  }

  // A running scan's page follows its progress; when it ends, the page re-renders itself
  // from the server (results, exports), through htmx.
  function followScan() {
    var detail = document.getElementById("scan-detail");
    if (!detail || detail.getAttribute("data-scan-status") !== "running" || !window.EventSource) {
      return;
    }
    var id = detail.getAttribute("data-scan");
    var source = new EventSource("/scans/" + encodeURIComponent(id) + "/events");
    source.addEventListener("progress", function (ev) {
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      var bar = document.getElementById("scan-progress");
      var text = document.getElementById("scan-progress-text");
      if (bar) { bar.value = data.percent; bar.textContent = data.percent + "%"; }
      if (text && data.status === "running") {
        text.textContent = data.done + " of " + (data.total || "?") + " probes";
      }
      if (data.status !== "running") {
        source.close();
        announce("Scan " + String(id).slice(0, 8) + "… " + data.status);
        if (window.htmx) {
          window.htmx.ajax("GET", window.location.pathname + window.location.search,
                           { target: "#scan-detail", select: "#scan-detail", swap: "outerHTML" });
        }
      }
    });
  }

  function boot() {
    start();
    followScan();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", boot);
  } else {
    boot();
  }
})();
