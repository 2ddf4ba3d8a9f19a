import Crypto
import Foundation

/// The live dashboard at `GET /` of the stats endpoint: one self-contained page (inline CSS and
/// JS, no external asset, font or CDN) that polls `stats` every second and `routes` every five, and
/// draws the last five minutes on canvases. docs/operations.md#the-live-dashboard describes it.
///
/// The page is Swift string literals compiled into the binary, not a SwiftPM resource: on Linux a
/// resource lands in a `ptpchat-relay_RelayOps.resources` folder beside the executable, which the
/// install steps (deploy/, the Dockerfile) leave behind when they copy the one static binary.
/// The Content-Security-Policy allows exactly this script and this style sheet by their SHA-256,
/// computed here from the same strings, so an edit to either cannot fall out of step with it.
enum DashboardPage {
    /// The whole page, as served.
    static let html: String = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="color-scheme" content="light dark">
        <title>ptpchat-relay</title>
        <link rel="icon" href="data:,">
        <style>\(style)</style>
        </head>
        <body>
        \(body)
        <script>\(script)</script>
        </body>
        </html>

        """

    static let bytes: [UInt8] = Array(html.utf8)

    /// Nothing but this page's own script and style, requests to its own origin (`stats`,
    /// `routes`) and the empty `data:` icon; no framing, no forms, no `<base>`.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src '\(sha256(script))'; style-src '\(sha256(style))'; connect-src 'self'; "
        + "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    /// Changes with the page (a new build): browsers revalidate (`no-cache`) and get 304 until then.
    static let entityTag = "\"\(sha256(html).dropFirst("sha256-".count).prefix(16).replacingOccurrences(of: "/", with: "_"))\""

    /// `sha256-<base64>`, as a CSP source expression.
    static func sha256(_ text: String) -> String {
        "sha256-" + Data(SHA256.hash(data: Array(text.utf8))).base64EncodedString()
    }

    static let style = #"""

        :root{--bg:#f6f7f9;--card:#fff;--fg:#1b1f24;--muted:#667080;--line:#e3e6ea;--grid:#eceef1;
        --ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--c1:#2f6fde;--c2:#8250df;--c3:#1a7f37;--c4:#d1242f;--c5:#bc4c00;--c6:#0a7f8f;
        --sans:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
        --mono:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
        @media (prefers-color-scheme:dark){:root{--bg:#0f1216;--card:#171b21;--fg:#e6e9ee;--muted:#8d96a3;--line:#272d36;--grid:#222831;
        --ok:#3fb950;--bad:#f85149;--warn:#d29922;--c1:#5b9cff;--c2:#b48cff;--c3:#3fb950;--c4:#ff6b6b;--c5:#f0883e;--c6:#39c5cf}}
        *{box-sizing:border-box}
        body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 var(--sans);-webkit-font-smoothing:antialiased}
        header{display:flex;flex-wrap:wrap;align-items:center;gap:8px 24px;padding:16px 24px;border-bottom:1px solid var(--line);background:var(--card)}
        h1{margin:0;font-size:20px;font-weight:650;letter-spacing:-.01em}
        h2{margin:0 0 8px;font-size:13px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
        .meta{display:flex;flex-wrap:wrap;gap:4px 18px;color:var(--muted);font-size:13px}
        .meta b{color:var(--fg);font-weight:500}
        .mono{font-family:var(--mono);font-size:12.5px}
        .pill{display:inline-flex;align-items:center;gap:6px;padding:2px 10px;border-radius:999px;font-size:12.5px;font-weight:600;border:1px solid var(--line)}
        .pill::before{content:"";width:8px;height:8px;border-radius:50%;background:currentColor}
        .ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}
        #link{margin-left:auto}
        main{padding:20px 24px 32px;display:grid;gap:16px;max-width:1600px;margin:0 auto}
        main.stale .card{opacity:.55}
        .kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px}
        .card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;min-width:0}
        .kpi .v{font-size:28px;font-weight:650;font-variant-numeric:tabular-nums;letter-spacing:-.02em;line-height:1.2}
        .kpi .l{color:var(--muted);font-size:12.5px}
        .kpi .s{color:var(--muted);font-size:12px;font-variant-numeric:tabular-nums}
        .charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:12px}
        .charts .head{display:flex;justify-content:space-between;align-items:baseline;gap:8px}
        .now{font-variant-numeric:tabular-nums;font-weight:600}
        canvas{display:block;width:100%;height:150px}
        .legend{display:flex;flex-wrap:wrap;gap:2px 12px;min-height:18px;font-size:12px;color:var(--muted)}
        .legend i{display:inline-block;width:10px;height:3px;border-radius:2px;margin-right:5px;vertical-align:middle}
        .tables{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:12px}
        .scroll{max-height:360px;overflow:auto}
        table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}
        th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);white-space:nowrap}
        th{position:sticky;top:0;background:var(--card);color:var(--muted);font-weight:600;font-size:12px}
        td.n,th.n{text-align:right}
        .empty{color:var(--muted);font-style:italic}
        input{font:inherit;color:inherit;background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:3px 8px;width:200px}
        .bar{display:flex;justify-content:space-between;align-items:center;gap:8px;margin-bottom:8px}
        .bar h2{margin:0}
        .note{color:var(--muted);font-size:12px}

        """#

    static let body = #"""
        <header>
          <h1 id="relay-name">ptpchat-relay</h1>
          <span id="state" class="pill warn">starting</span>
          <div class="meta">
            <span>node <b id="node-id" class="mono">…</b></span>
            <span>version <b id="version">…</b></span>
            <span>up <b id="uptime">…</b></span>
          </div>
          <span id="link" class="pill warn">connecting…</span>
        </header>
        <main id="main">
          <section class="kpis">
            <div class="card kpi"><div class="l">Messages relayed /s</div><div class="v" id="kpi-rate">–</div><div class="s"><span id="kpi-relayed">–</span> since start</div></div>
            <div class="card kpi"><div class="l">Clients</div><div class="v" id="kpi-clients">–</div><div class="s"><span id="kpi-handshaking">–</span> handshaking</div></div>
            <div class="card kpi"><div class="l">Peer relays</div><div class="v" id="kpi-peers">–</div><div class="s"><span id="kpi-routes">–</span> routes</div></div>
            <div class="card kpi"><div class="l">Nodes known</div><div class="v" id="kpi-nodes">–</div><div class="s"><span id="kpi-legacy">–</span> legacy clients</div></div>
            <div class="card kpi"><div class="l">Stored for later</div><div class="v" id="kpi-store">–</div><div class="s" id="kpi-store-bytes">–</div></div>
            <div class="card kpi"><div class="l">Drops /s</div><div class="v" id="kpi-drops">–</div><div class="s"><span id="kpi-drops-total">–</span> since start</div></div>
          </section>
          <section class="charts">
            <div class="card"><div class="head"><h2>Messages relayed /s</h2><span class="now" id="now-rate"></span></div><div class="legend" id="legend-rate"></div><canvas id="chart-rate" role="img" aria-label="Messages relayed per second over the last five minutes"></canvas></div>
            <div class="card"><div class="head"><h2>Connections</h2><span class="now" id="now-connections"></span></div><div class="legend" id="legend-connections"></div><canvas id="chart-connections" role="img" aria-label="Connections over the last five minutes"></canvas></div>
            <div class="card"><div class="head"><h2>Peer relays</h2><span class="now" id="now-peers"></span></div><div class="legend" id="legend-peers"></div><canvas id="chart-peers" role="img" aria-label="Peer relays up over the last five minutes"></canvas></div>
            <div class="card"><div class="head"><h2>Store depth</h2><span class="now" id="now-store"></span></div><div class="legend" id="legend-store"></div><canvas id="chart-store" role="img" aria-label="Messages in the store over the last five minutes"></canvas></div>
            <div class="card"><div class="head"><h2>Bytes /s on the wire</h2><span class="now" id="now-traffic"></span></div><div class="legend" id="legend-traffic"></div><canvas id="chart-traffic" role="img" aria-label="Bytes per second received and sent over the last five minutes"></canvas></div>
            <div class="card"><div class="head"><h2>Drops /s by reason</h2><span class="now" id="now-drops"></span></div><div class="legend" id="legend-drops"></div><canvas id="chart-drops" role="img" aria-label="Drops per second by reason over the last five minutes"></canvas></div>
          </section>
          <section class="tables">
            <div class="card"><div class="bar"><h2>Peer relays</h2><span class="note" id="peers-count"></span></div>
              <div class="scroll"><table><thead><tr><th>Name</th><th>Node id</th><th>Address</th><th>State</th><th class="n">Up for</th><th class="n">Routes</th><th class="n">Last ROUTING</th></tr></thead><tbody id="peers"></tbody></table></div></div>
            <div class="card"><div class="bar"><h2>Routes</h2><span class="note" id="routes-count"></span><input id="routes-filter" type="search" placeholder="Filter by name or id" aria-label="Filter routes"></div>
              <div class="scroll"><table><thead><tr><th>Node</th><th>Node id</th><th class="n">Hops</th><th>Via</th><th>Legacy</th></tr></thead><tbody id="routes"></tbody></table></div></div>
          </section>
        </main>
        """#

    static let script = #"""

        "use strict";
        // Polls ./stats every second (./routes every fifth poll, and when the filter changes) and
        // keeps WINDOW seconds of samples.
        const POLL_MS = 1000, RETRY_MS = 2000, WINDOW = 300, ROUTES_EVERY = 5, ROUTE_ROWS = 200;
        const $ = (id) => document.getElementById(id);
        const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
        const samples = { rate: [], bytesIn: [], bytesOut: [], clients: [], handshaking: [], peers: [], store: [], drops: {} };
        let previous = null, polls = 0, routes = null, peerNames = {};

        const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
        function short(n) {
          const a = Math.abs(n);
          if (a >= 1e9) return (n / 1e9).toFixed(a >= 1e10 ? 0 : 1) + "G";
          if (a >= 1e6) return (n / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
          if (a >= 1e4) return (n / 1e3).toFixed(a >= 1e5 ? 0 : 1) + "k";
          if (a > 0 && a < 10 && n % 1) return n.toFixed(1);
          return integer.format(n);
        }
        function bytes(n) {
          const units = ["B", "KiB", "MiB", "GiB", "TiB"];
          let i = 0;
          while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
          return (i ? n.toFixed(n >= 100 ? 0 : 1) : n) + " " + units[i];
        }
        function duration(s) {
          s = Math.max(0, Math.floor(s));
          const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
          if (d) return d + "d " + h + "h";
          if (h) return h + "h " + m + "m";
          if (m) return m + "m " + (s % 60) + "s";
          return s + "s";
        }
        function since(iso) {
          const t = Date.parse(iso);
          return Number.isFinite(t) ? duration((Date.now() - t) / 1000) : "–";
        }
        // Sets an element's text and keeps the raw number in data-value (read by the tests).
        function show(id, text, value) {
          const el = $(id);
          el.textContent = text;
          if (value !== undefined) el.dataset.value = String(value);
        }
        function cell(row, text, className, title) {
          const td = document.createElement("td");
          td.textContent = text;
          if (className) td.className = className;
          if (title) td.title = title;
          row.appendChild(td);
          return td;
        }
        function emptyRow(tbody, columns, text) {
          const row = document.createElement("tr");
          cell(row, text, "empty").colSpan = columns;
          tbody.appendChild(row);
        }

        function push(list, t, v) {
          list.push([t, v]);
          while (list.length && list[0][0] < t - WINDOW - 2) list.shift();
        }

        function record(stats, t) {
          const relayed = stats.messages_relayed || 0;
          const drops = stats.drops || {};
          const dropTotal = Object.values(drops).reduce((a, b) => a + b, 0);
          // A relay that restarted counts from zero again: start the rates afresh.
          if (previous && (relayed < previous.relayed || dropTotal < previous.dropTotal)) previous = null;
          let rate = 0, dropRate = 0;
          const wire = stats.bytes || {};
          if (previous && t > previous.t) {
            const dt = t - previous.t;
            rate = (relayed - previous.relayed) / dt;
            push(samples.rate, t, rate);
            push(samples.bytesIn, t, Math.max(0, ((wire.in || 0) - previous.bytesIn) / dt));
            push(samples.bytesOut, t, Math.max(0, ((wire.out || 0) - previous.bytesOut) / dt));
            for (const [reason, count] of Object.entries(drops)) {
              const r = (count - (previous.drops[reason] || 0)) / dt;
              dropRate += r;
              push(samples.drops[reason] || (samples.drops[reason] = []), t, r);
            }
          }
          const c = stats.connections || {};
          push(samples.clients, t, c.clients || 0);
          push(samples.handshaking, t, c.handshaking || 0);
          push(samples.peers, t, c.peers || 0);
          push(samples.store, t, (stats.store || {}).messages || 0);
          previous = { t, relayed, drops: { ...drops }, dropTotal, bytesIn: wire.in || 0, bytesOut: wire.out || 0 };
          return { rate, dropRate, dropTotal, relayed };
        }

        function render(stats, now) {
          const name = stats.name || "relay";
          show("relay-name", name);
          document.title = name + " · ptpchat-relay";
          show("node-id", stats.node_id || "–");
          show("version", stats.version || "–");
          show("uptime", duration(stats.uptime_s || 0), stats.uptime_s);
          const state = $("state");
          state.textContent = stats.state || "unknown";
          state.className = "pill " + (stats.state === "serving" ? "ok" : stats.state === "stopping" ? "bad" : "warn");
          const c = stats.connections || {}, store = stats.store || {}, mesh = stats.mesh || {};
          show("kpi-rate", short(now.rate), now.rate);
          show("kpi-relayed", short(now.relayed), now.relayed);
          show("kpi-clients", short(c.clients || 0), c.clients || 0);
          show("kpi-handshaking", short(c.handshaking || 0), c.handshaking || 0);
          show("kpi-peers", short(c.peers || 0), c.peers || 0);
          show("kpi-routes", short(mesh.routes || 0), mesh.routes || 0);
          show("kpi-nodes", short(stats.nodes_known || 0), stats.nodes_known || 0);
          show("kpi-legacy", short((stats.legacy_clients || {}).connected || 0));
          show("kpi-store", short(store.messages || 0), store.messages || 0);
          show("kpi-store-bytes", bytes(store.bytes || 0) + (store.max_bytes ? " of " + bytes(store.max_bytes) : ""), store.bytes || 0);
          show("kpi-drops", short(now.dropRate), now.dropRate);
          show("kpi-drops-total", short(now.dropTotal), now.dropTotal);
          show("now-rate", short(now.rate) + " /s");
          show("now-connections", short(c.clients || 0) + " clients");
          show("now-peers", short(c.peers || 0) + " up");
          show("now-store", short(store.messages || 0) + " messages");
          show("now-drops", short(now.dropRate) + " /s");
          const lastIn = samples.bytesIn[samples.bytesIn.length - 1], lastOut = samples.bytesOut[samples.bytesOut.length - 1];
          show("now-traffic", lastIn ? bytes(lastIn[1]) + "/s in · " + bytes(lastOut[1]) + "/s out" : "");
          renderPeers(mesh.peers || []);
        }

        function renderPeers(peers) {
          const tbody = $("peers");
          tbody.replaceChildren();
          peerNames = {};
          for (const p of peers) if (p.node_id) peerNames[p.node_id.toLowerCase()] = p.name || p.address || p.node_id;
          show("peers-count", peers.length ? peers.filter((p) => p.state === "up").length + " of " + peers.length + " up" : "");
          if (!peers.length) return emptyRow(tbody, 7, "No peer relays (mesh.peers is empty and none dialed in).");
          for (const p of peers) {
            const row = document.createElement("tr");
            cell(row, p.name || "–");
            cell(row, p.node_id ? p.node_id.slice(0, 8) + "…" : "–", "mono", p.node_id || "");
            cell(row, p.address || "–", "mono");
            cell(row, "").appendChild(Object.assign(document.createElement("span"), {
              className: "pill " + (p.state === "up" ? "ok" : "warn"), textContent: p.state }));
            cell(row, p.since ? since(p.since) : "–", "n");
            cell(row, short(p.routes_learned || 0), "n");
            cell(row, p.last_routing ? since(p.last_routing) + " ago" : "–", "n");
            tbody.appendChild(row);
          }
        }

        // The relay filters and cuts the table (routes?limit=&match=): a page never fetches more
        // rows than it shows, however many routes the relay has.
        function routesPath() {
          const filter = $("routes-filter").value.trim();
          return "routes?limit=" + ROUTE_ROWS + (filter ? "&match=" + encodeURIComponent(filter) : "");
        }

        async function fetchRoutes() {
          const asked = $("routes-filter").value.trim();
          const answer = await get(routesPath());
          if ($("routes-filter").value.trim() !== asked) return;  // typed on meanwhile: a newer fetch follows
          routes = answer;
          routes.filter = asked;
          renderRoutes();
        }

        function renderRoutes() {
          if (!routes) return;
          const tbody = $("routes");
          const rows = routes.routes || [];
          const matched = routes.matched === undefined ? rows.length : routes.matched;
          tbody.replaceChildren();
          show("routes-count", (routes.filter ? matched + " of " : "") + routes.count + " routes"
            + (matched > rows.length ? ", first " + rows.length + " shown" : ""), routes.count);
          if (!rows.length) return emptyRow(tbody, 5, routes.filter ? "No route matches." : "No routes yet.");
          for (const r of rows) {
            const at = r.node.lastIndexOf("@");
            const row = document.createElement("tr");
            cell(row, at > 0 ? r.node.slice(0, at) : "–");
            cell(row, at >= 0 ? r.node.slice(at + 1) : r.node, "mono");
            cell(row, String(r.ttl), "n");
            const via = r.via === "local" ? "local" : peerNames[r.via.toLowerCase()] || r.via.slice(0, 8) + "…";
            cell(row, via, r.via === "local" ? "" : "mono", r.via);
            cell(row, r.legacy ? "yes" : "–");
            tbody.appendChild(row);
          }
        }

        // The top of an axis of four steps, each 1, 2, 2.5 or 5 times a power of ten (whole
        // numbers for counts of things).
        function ceiling(v, whole) {
          const want = v > 0 ? v / 4 : 0.25;
          const e = Math.pow(10, Math.floor(Math.log10(want)));
          let step = 10 * e;
          for (const m of [1, 2, 2.5, 5]) if (want <= m * e && !(whole && (m * e) % 1)) { step = m * e; break; }
          return 4 * (whole ? Math.max(1, step) : step);
        }

        function chart(id, lines, whole, label) {
          const canvas = $(id), ratio = window.devicePixelRatio || 1;
          const w = canvas.clientWidth, h = canvas.clientHeight;
          if (!w || !h) return;
          if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
            canvas.width = Math.round(w * ratio);
            canvas.height = Math.round(h * ratio);
          }
          const g = canvas.getContext("2d");
          g.setTransform(ratio, 0, 0, ratio, 0, 0);
          g.clearRect(0, 0, w, h);
          const L = 58, R = 10, T = 8, B = 20, end = performance.now() / 1000, start = end - WINDOW;
          let max = 0;
          for (const l of lines) for (const p of l.points) if (p[0] >= start && p[1] > max) max = p[1];
          // Byte axes step in KiB, MiB, ... so that their labels are round.
          const unit = label === bytes && max >= 1024 ? Math.pow(1024, Math.floor(Math.log(max) / Math.log(1024))) : 1;
          const top = ceiling(max / unit, whole) * unit;
          const X = (t) => L + (w - L - R) * (t - start) / WINDOW, Y = (v) => T + (h - T - B) * (1 - v / top);
          g.font = "11px " + css("--sans");
          g.lineWidth = 1;
          g.strokeStyle = css("--grid");
          g.fillStyle = css("--muted");
          g.textAlign = "right";
          g.textBaseline = "middle";
          for (let i = 0; i <= 4; i++) {
            const y = Math.round(Y(top * i / 4)) + 0.5;
            g.beginPath(); g.moveTo(L, y); g.lineTo(w - R, y); g.stroke();
            g.fillText(label(top * i / 4).replace(".0 ", " "), L - 8, y);
          }
          g.textBaseline = "top";
          for (let m = 0; m * 60 <= WINDOW; m++) {
            g.textAlign = m === 0 ? "right" : m * 60 === WINDOW ? "left" : "center";
            g.fillText(m ? "−" + m + " min" : "now", X(end - m * 60), h - B + 6);
          }
          g.save();
          g.beginPath(); g.rect(L, 0, w - L - R, h); g.clip();
          for (const l of lines) {
            const pts = l.points;
            if (pts.length < 2) continue;
            g.beginPath();
            pts.forEach((p, i) => (i ? g.lineTo(X(p[0]), Y(p[1])) : g.moveTo(X(p[0]), Y(p[1]))));
            g.strokeStyle = l.color; g.lineWidth = 1.75; g.lineJoin = "round"; g.stroke();
            if (lines.length === 1) {
              g.lineTo(X(pts[pts.length - 1][0]), Y(0)); g.lineTo(X(pts[0][0]), Y(0)); g.closePath();
              g.globalAlpha = 0.12; g.fillStyle = l.color; g.fill(); g.globalAlpha = 1;
            }
          }
          g.restore();
        }

        function legend(id, lines) {
          const box = $(id);
          const key = lines.map((l) => l.label + l.color).join("|");
          if (box.dataset.key === key) return;
          box.dataset.key = key;
          box.replaceChildren(...lines.map((l) => {
            const span = document.createElement("span"), swatch = document.createElement("i");
            swatch.style.background = l.color;
            span.append(swatch, l.label);
            return span;
          }));
        }

        function drawAll() {
          const c = ["--c1", "--c2", "--c3", "--c4", "--c5", "--c6"].map(css);
          const sets = {
            "rate": [{ label: "messages relayed", color: c[0], points: samples.rate }],
            "connections": [{ label: "clients", color: c[0], points: samples.clients },
              { label: "handshaking", color: c[4], points: samples.handshaking }],
            "peers": [{ label: "peer relays up", color: c[1], points: samples.peers }],
            "traffic": [{ label: "received", color: c[0], points: samples.bytesIn }, { label: "sent", color: c[1], points: samples.bytesOut }],
            "store": [{ label: "messages stored", color: c[5], points: samples.store }],
            // Only reasons that dropped something in the window, each in its own colour.
            "drops": Object.keys(samples.drops).sort()
              .filter((r) => samples.drops[r].some((p) => p[1] > 0))
              .map((r, i) => ({ label: r, color: c[(i + 3) % c.length], points: samples.drops[r] })),
          };
          for (const [name, lines] of Object.entries(sets)) {
            legend("legend-" + name, lines.length ? lines : [{ label: "none", color: css("--grid") }]);
            chart("chart-" + name, lines, name !== "rate" && name !== "drops" && name !== "traffic", name === "traffic" ? bytes : short);
          }
        }

        function linkState(up, why) {
          const link = $("link");
          link.textContent = up ? "live" : "disconnected · retrying";
          link.className = "pill " + (up ? "ok" : "bad");
          link.title = up ? "updated " + new Date().toLocaleTimeString() : String(why || "");
          $("main").classList.toggle("stale", !up);
          document.body.dataset.link = up ? "live" : "disconnected";
        }

        async function get(path) {
          const response = await fetch(path, { cache: "no-store" });
          if (!response.ok) throw new Error(path + ": HTTP " + response.status);
          return response.json();
        }

        async function poll() {
          const begun = performance.now();
          let up = true;
          try {
            const stats = await get("stats");
            const now = record(stats, performance.now() / 1000);
            render(stats, now);
            if (polls % ROUTES_EVERY === 0) await fetchRoutes();
            polls++;
            document.body.dataset.polls = String(polls);
            linkState(true);
          } catch (error) {
            up = false;
            previous = null;
            linkState(false, error);
          }
          drawAll();
          setTimeout(poll, Math.max(0, (up ? POLL_MS : RETRY_MS) - (performance.now() - begun)));
        }

        let filterTimer = null;
        $("routes-filter").addEventListener("input", () => {
          clearTimeout(filterTimer);
          filterTimer = setTimeout(() => fetchRoutes().catch((error) => linkState(false, error)), 250);
        });
        window.addEventListener("resize", drawAll);
        poll();

        """#
}
