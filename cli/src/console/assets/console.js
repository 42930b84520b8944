// jira-relay operator console: the feed updates itself (polls /api/feed for
// rows newer than the newest shown, with the page's filters). No framework.
(function () {
  "use strict";
  var table = document.getElementById("feed-table");
  var live = document.getElementById("live");
  if (!table || !live) return;
  var params = new URLSearchParams(window.location.search);
  if (params.get("until")) { live.textContent = "paused (time range)"; live.className = "live off"; return; }
  var body = table.tBodies[0];
  function newest() {
    var first = body.querySelector("tr[data-id]");
    return first ? Number(first.getAttribute("data-id")) : 0;
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function link(href, text, cls) {
    var a = document.createElement("a");
    a.href = href; a.textContent = text; if (cls) a.className = cls;
    return a;
  }
  function badge(outcome) {
    var s = document.createElement("span");
    var cls = { applied: "ok", dead: "bad", retry: "warn", held: "warn", deadline: "warn" }[outcome] || "info";
    s.className = "badge " + cls; s.textContent = outcome;
    return s;
  }
  function row(d) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-id", String(d.id));
    tr.className = "new";
    cell(tr, link("/delivery/" + d.id, String(d.id)));
    cell(tr, new Date(d.at_ms).toISOString().replace("T", " ").slice(0, 19), "time");
    cell(tr, d.endpoint, "wide");
    cell(tr, d.event);
    cell(tr, d.source_key ? link("/conversation/" + encodeURIComponent(d.source_key), d.source_key, "conv-link") : "");
    cell(tr, badge(d.outcome));
    cell(tr, d.reason, "wide reason");
    var t = cell(tr, "");
    d.targets.forEach(function (k, i) {
      if (i) t.appendChild(document.createTextNode(" "));
      t.appendChild(link("/conversation/" + encodeURIComponent(k), k, "conv-link"));
    });
    return tr;
  }
  function poll() {
    var q = new URLSearchParams(params);
    q.set("after", String(newest()));
    fetch("/api/feed?" + q.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error(String(r.status));
        return r.json();
      })
      .then(function (rows) {
        live.textContent = "live"; live.className = "live";
        rows.reverse().forEach(function (d) { body.insertBefore(row(d), body.firstChild); });
      })
      .catch(function () { live.textContent = "reconnecting"; live.className = "live off"; })
      .then(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 2000);
})();
