#!/usr/bin/env python3
"""Writes deploy/grafana/ptpchat-relay.json, the Grafana dashboard on the relay's ptpchat_* metrics.

Every query goes through the dashboard variable `datasource` (pick the Prometheus data source on
import or at the top of the dashboard) and `instance` (one relay, several, or all).

The JSON is generated so that every panel has the same datasource variable, unique ids and a
tidy grid; edit the panel list below and run this script again (CI checks the file is current:
.ci/check-deploy.sh runs it with --check).
"""
import json, pathlib, sys

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
panels, next_id = [], [1]


def panel(kind, title, targets, w, h, x, y, unit="short", description="", **extra):
    p = {
        "id": next_id[0], "type": kind, "title": title, "description": description, "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "targets": [{"datasource": DS, "refId": chr(65 + i), "expr": e, "legendFormat": l} for i, (e, l) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    next_id[0] += 1
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    p.update(extra)
    panels.append(p)


def row(title, y):
    panels.append({"id": next_id[0], "type": "row", "title": title, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
    next_id[0] += 1


def rate(metric, by=None, extra=""):
    inner = f'rate({metric}{{{SEL}{extra}}}[$__rate_interval])'
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


updown = {"mappings": [{"type": "value", "options": {"0": {"text": "no", "color": "red"}, "1": {"text": "yes", "color": "green"}}}]}
row("Overview", 0)
panel("stat", "Up", [(f'up{{job="ptpchat-relay", {SEL}}}', "{{instance}}")], 3, 4, 0, 1,
      description="Whether Prometheus scrapes the stats endpoint (job ptpchat-relay).",
      fieldConfig={"defaults": {"unit": "none", **updown}, "overrides": []})
panel("stat", "Ready", [(f"ptpchat_ready{{{SEL}}}", "{{instance}}")], 3, 4, 3, 1,
      description="1 while /readyz answers 200.", fieldConfig={"defaults": {"unit": "none", **updown}, "overrides": []})
panel("stat", "Uptime", [(f"ptpchat_uptime_seconds{{{SEL}}}", "{{instance}}")], 3, 4, 6, 1, unit="s")
panel("stat", "Version", [(f"ptpchat_build_info{{{SEL}}}", "{{version}}")], 3, 4, 9, 1,
      options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "textMode": "name", "colorMode": "none", "graphMode": "none"})
panel("stat", "Messages relayed /s", [(rate("ptpchat_messages_relayed_total"), "relayed")], 4, 4, 12, 1, unit="reqps")
panel("stat", "Clients", [(f'sum(ptpchat_connections{{{SEL}, kind="client"}})', "clients")], 4, 4, 16, 1)
panel("stat", "Peer relays up", [(f"sum(ptpchat_mesh_peers{{{SEL}}})", "peers")], 4, 4, 20, 1)

row("Traffic", 5)
panel("timeseries", "Messages relayed /s by verb", [(rate("ptpchat_messages_relayed_total", "verb"), "{{verb}}")], 12, 8, 0, 6, unit="reqps")
panel("timeseries", "Bytes relayed /s by verb", [(rate("ptpchat_bytes_relayed_total", "verb"), "{{verb}}")], 12, 8, 12, 6, unit="Bps")
panel("timeseries", "Frames /s", [(rate("ptpchat_frames_received_total"), "received"), (rate("ptpchat_frames_sent_total"), "sent")], 8, 8, 0, 14)
panel("timeseries", "Bytes /s on the wire", [(rate("ptpchat_bytes_received_total"), "received"), (rate("ptpchat_bytes_sent_total"), "sent")], 8, 8, 8, 14, unit="Bps")
panel("timeseries", "ACKs /s", [(rate("ptpchat_acks_sent_total"), "sent to senders"), (rate("ptpchat_acks_received_total"), "received from recipients")], 8, 8, 16, 14)

row("Connections and mesh", 22)
panel("timeseries", "Connections", [(f"sum by (kind) (ptpchat_connections{{{SEL}}})", "{{kind}}"), (f"sum(ptpchat_legacy_clients{{{SEL}}})", "legacy clients"),
                                    (f"sum(ptpchat_nodes_known{{{SEL}}})", "nodes known")], 8, 8, 0, 23)
panel("timeseries", "Connections accepted /s", [(rate("ptpchat_connections_accepted_total"), "accepted"), (rate("ptpchat_introductions_total"), "legacy introductions")], 8, 8, 8, 23)
panel("timeseries", "Peer relays and routes", [(f"sum(ptpchat_mesh_peers{{{SEL}}})", "peers up"), (f"sum(ptpchat_mesh_peers_connecting{{{SEL}}})", "mesh.peers not connected"),
                                               (f"sum(ptpchat_routes{{{SEL}}})", "routes")], 8, 8, 16, 23)
panel("timeseries", "ROUTING frames /s", [(rate("ptpchat_routing_frames_total", "direction"), "{{direction}}")], 8, 8, 0, 31)
panel("timeseries", "CONNECT and hole punching /s", [(rate("ptpchat_connect_brokered_total"), "brokered"), (rate("ptpchat_connect_discoveries_total"), "discoveries"),
                                                     (rate("ptpchat_punch_succeeded_total"), "punch succeeded"), (rate("ptpchat_punch_failed_total"), "punch failed")], 8, 8, 8, 31)
panel("timeseries", "Legacy deliveries /s", [(rate("ptpchat_legacy_delivered_on_write_total"), "delivered on write")], 8, 8, 16, 31)

row("Problems", 39)
panel("timeseries", "Drops /s by reason", [(rate("ptpchat_drops_total", "reason") + " > 0", "{{reason}}")], 12, 8, 0, 40,
      description="Frames the relay dropped, by reason (docs/operations.md). flood_duplicate is normal in a mesh.")
panel("timeseries", "NACKs sent /s by reason", [(rate("ptpchat_nacks_sent_total", "reason") + " > 0", "{{reason}}")], 12, 8, 12, 40)

row("Store and forward", 48)
panel("timeseries", "Stored messages", [(f"sum(ptpchat_store_messages{{{SEL}}})", "messages")], 8, 8, 0, 49)
panel("gauge", "Store fill", [(f"sum(ptpchat_store_bytes{{{SEL}}}) / sum(ptpchat_store_max_bytes{{{SEL}}})", "fill")], 8, 8, 8, 49,
      description="store bytes / store.max_bytes; alerts at 80 % and 95 %.",
      fieldConfig={"defaults": {"unit": "percentunit", "min": 0, "max": 1, "thresholds": {"mode": "absolute", "steps": [
          {"color": "green", "value": None}, {"color": "orange", "value": 0.8}, {"color": "red", "value": 0.95}]}}, "overrides": []})
panel("timeseries", "Stored and delivered /s", [(rate("ptpchat_store_stored_total"), "stored"), (rate("ptpchat_store_delivered_total"), "delivered from the store")], 8, 8, 16, 49)

dashboard = {
    "__requires": [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "9.0.0"},
                   {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"}],
    "uid": "ptpchat-relay", "title": "ptpchat relay", "tags": ["ptpchat"], "timezone": "browser", "editable": True,
    "schemaVersion": 39, "version": 1, "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
    "annotations": {"list": []}, "links": [],
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0, "refresh": 1},
        {"name": "instance", "label": "Relay", "type": "query", "datasource": DS, "query": {"query": "label_values(ptpchat_uptime_seconds, instance)", "refId": "instance"},
         "definition": "label_values(ptpchat_uptime_seconds, instance)", "includeAll": True, "multi": True, "allValue": ".*",
         "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1, "hide": 0},
    ]},
    "panels": panels,
}
text = json.dumps(dashboard, indent=2) + "\n"
out = pathlib.Path(__file__).resolve().parent.parent / "deploy/grafana/ptpchat-relay.json"
if sys.argv[1:] == ["--check"]:
    if out.read_text() != text:
        sys.exit(f"{out} is not what {sys.argv[0]} writes: run it again and commit the result")
    print(f"{out.name}: {len(panels)} panels, current")
else:
    out.write_text(text)
    print(f"wrote {out}: {len(panels)} panels")
