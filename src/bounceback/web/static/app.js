// bounceback dashboard: live regions over server-sent events, countdowns, notifications.
// Hand-written, no build step, no inline code (the Content-Security-Policy allows scripts from files only).
"use strict";

(function () {
  const body = document.body;
  // Server time minus browser time, so countdowns count against the server's clock.
  let offsetMs = parseFloat(body.dataset.serverNow || "0") * 1000 - Date.now();

  function serverNow() {
    return (Date.now() + offsetMs) / 1000;
  }

  function fmtSeconds(s) {
    if (s < 1) return Math.max(0, Math.round(s * 1000)) + " ms";
    if (s < 60) return (Math.round(s * 10) / 10).toFixed(1).replace(/\.0$/, "") + " s";
    if (s < 3600) {
      const m = Math.floor(Math.round(s) / 60), r = Math.round(s) % 60;
      return r ? m + " min " + r + " s" : m + " min";
    }
    const h = Math.floor(Math.round(s) / 3600), m = Math.floor((Math.round(s) % 3600) / 60);
    return m ? h + " h " + m + " min" : h + " h";
  }

  // -- countdowns and deadline bars ------------------------------------------------------------------
  function tick() {
    const now = serverNow();
    document.querySelectorAll("[data-until]").forEach(function (el) {
      const left = parseFloat(el.dataset.until) - now;
      el.textContent = left > 0 ? (el.dataset.prefix || "") + fmtSeconds(left) : el.dataset.done || "now";
      el.classList.toggle("due", left <= 0);
    });
    document.querySelectorAll("progress[data-start][data-end]").forEach(function (el) {
      const start = parseFloat(el.dataset.start), end = parseFloat(el.dataset.end);
      el.value = Math.min(Math.max(now - start, 0), end - start);
    });
  }
  setInterval(tick, 200);
  tick();

  // -- live regions ----------------------------------------------------------------------------------
  function isDirty(region) {
    // A refused save: its messages and the values typed stay until the person saves again.
    if (region.querySelector("[data-hold]")) return true;
    const active = document.activeElement;
    if (active && region.contains(active) && active.matches("input, select, textarea")) return true;
    for (const el of region.querySelectorAll("input, textarea")) {
      if (el.type !== "hidden" && el.value !== el.defaultValue) return true;
    }
    for (const sel of region.querySelectorAll("select")) {
      // With no option marked selected in the HTML, the first one is the default.
      let initial = 0;
      for (let i = 0; i < sel.options.length; i++) if (sel.options[i].defaultSelected) initial = i;
      if (sel.selectedIndex !== initial) return true;
    }
    return false;
  }

  function applyRegions(msg) {
    offsetMs = msg.now * 1000 - Date.now();
    body.dataset.version = String(msg.version);
    const appliedAt = Date.now();
    for (const [id, html] of Object.entries(msg.regions)) {
      const region = document.getElementById(id);
      if (!region || !region.hasAttribute("data-live")) continue;
      const leader = region.dataset.follows && document.getElementById(region.dataset.follows);
      if (isDirty(region) || (leader && isDirty(leader))) {
        // Someone is typing here: keep their input, say the stored values moved.
        region.dataset.stale = "true";
        continue;
      }
      region.innerHTML = html;
      delete region.dataset.stale;
      region.dataset.appliedAt = String(appliedAt);
      region.dataset.version = String(msg.version);
    }
    wire(document);
    tick();
  }

  const status = document.getElementById("live-status");
  function setStatus(state, text) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  }

  let noticeSeq = parseInt(body.dataset.noticeSeq || "0", 10);
  function connect() {
    const params = new URLSearchParams(body.dataset.query || "");
    params.set("view", body.dataset.view || "overview");
    params.set("since", body.dataset.version || "0");
    params.set("notices", String(noticeSeq));
    const source = new EventSource("/events?" + params.toString());
    source.addEventListener("open", function () { setStatus("live", "live"); });
    source.addEventListener("error", function () {
      setStatus("down", "reconnecting…");
      if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
      // Refused outright: signed out (the dashboard restarted with a new token), or the server is gone.
      fetch("/api/openapi.json", { credentials: "same-origin" }).then(function (r) {
        if (r.status === 401 || r.status === 403) {
          setStatus("down", "signed out: open the link the dashboard printed");
        } else {
          setTimeout(connect, 2000);
        }
      }).catch(function () { setTimeout(connect, 2000); });
    });
    source.addEventListener("regions", function (ev) { applyRegions(JSON.parse(ev.data)); });
    source.addEventListener("notice", function (ev) {
      const notice = JSON.parse(ev.data);
      noticeSeq = Math.max(noticeSeq, notice.seq);
      showNotice(notice);
    });
  }
  if (window.EventSource) connect();

  // -- notifications ---------------------------------------------------------------------------------
  const notices = document.getElementById("notices");
  function showNotice(n) {
    if (notices) {
      const box = document.createElement("div");
      box.className = "notice notice-" + n.kind;
      box.setAttribute("role", "alert");
      const title = document.createElement("strong");
      title.textContent = n.title; // text, never HTML
      const text = document.createElement("span");
      text.textContent = n.body ? " " + n.body : "";
      const link = document.createElement("a");
      link.href = n.link && n.link.charAt(0) === "/" ? n.link : "/";
      link.textContent = "show";
      const close = document.createElement("button");
      close.type = "button";
      close.className = "quiet";
      close.textContent = "×";
      close.setAttribute("aria-label", "dismiss");
      close.addEventListener("click", function () { box.remove(); });
      box.append(title, text, link, close);
      notices.prepend(box);
      while (notices.children.length > 5) notices.lastElementChild.remove();
      setTimeout(function () { box.remove(); }, 30000);
    }
    if (window.Notification && Notification.permission === "granted") {
      try { new Notification(n.title, { body: n.body || "", tag: n.key }); } catch (e) { /* not allowed here */ }
    }
  }

  const ask = document.getElementById("enable-notifications");
  if (ask && window.Notification && Notification.permission === "default") {
    ask.hidden = false;
    ask.addEventListener("click", function () {
      Notification.requestPermission().then(function () { ask.hidden = true; });
    });
  }

  // -- settings: preview the backoff plot for the values being typed -------------------------------
  let previewTimer = null;
  function previewPlot(form) {
    const plot = document.getElementById("settings-plot");
    if (!plot) return;
    const params = new URLSearchParams();
    const op = form.querySelector('input[name="op"]');
    if (op && op.value) params.set("op", op.value);
    form.querySelectorAll('[name^="v:retry."]').forEach(function (el) {
      params.set(el.name.slice(2), el.value);
    });
    fetch("/settings/plot?" + params.toString(), { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) { plot.innerHTML = html; plot.dataset.preview = "true"; })
      .catch(function () { /* the stored plot stays */ });
  }

  // -- small behaviours (re-wired after every region swap) ------------------------------------------
  function wire(root) {
    root.querySelectorAll("form.settings").forEach(function (form) {
      if (form.dataset.wired) return;
      form.dataset.wired = "1";
      form.addEventListener("input", function (ev) {
        if (!ev.target.name || ev.target.name.indexOf("v:retry.") !== 0) return;
        clearTimeout(previewTimer);
        previewTimer = setTimeout(function () { previewPlot(form); }, 150);
      });
    });
    root.querySelectorAll("form[data-autosubmit] select").forEach(function (sel) {
      if (sel.dataset.wired) return;
      sel.dataset.wired = "1";
      sel.addEventListener("change", function () { sel.form.submit(); });
    });
  }
  wire(document);
})();
