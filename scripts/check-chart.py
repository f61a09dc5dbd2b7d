#!/usr/bin/env python3
"""Checks the Helm chart without helm (which no registry here offers), and the static deployment files.

* Every `.Values.a.b` path a template uses exists in values.yaml (a typo renders as nothing, silently).
* Every YAML file that is not a template parses (values.yaml, Chart.yaml, docker-compose, the monitoring
  rules), and the Grafana dashboard is JSON whose panels query only metrics the node exports.

The schema itself (values.schema.json against values.yaml) is checked by check-jsonschema; see
scripts/check-chart.sh. Exit status 1 with one line per problem.
"""
import json
import pathlib
import re
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
chart = root / "helm" / "gochat"
problems = []

values = yaml.safe_load((chart / "values.yaml").read_text())


def has_path(tree, parts):
    for part in parts:
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


for template in sorted((chart / "templates").glob("*")):
    for number, line in enumerate(template.read_text().splitlines(), 1):
        for path in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", line):
            parts = path.strip(".").split(".")
            if not has_path(values, parts):
                problems.append(f"{template.relative_to(root)}:{number}: .Values{path} is not in values.yaml")

for static in [chart / "values.yaml", chart / "Chart.yaml", root / "deploy" / "docker-compose.yml",
               *sorted((root / "deploy" / "monitoring").glob("*.yml"))]:
    try:
        yaml.safe_load(static.read_text())
    except yaml.YAMLError as e:
        problems.append(f"{static.relative_to(root)}: not YAML: {e}")

# The metrics the dashboard and alerts may use: those src/metrics.rs registers.
exported = set(re.findall(r'"(gochat_[a-z_]+)"', (root / "src" / "metrics.rs").read_text()))
for suffix in ("_bucket", "_sum", "_count"):
    exported |= {m + suffix for m in list(exported)}
monitoring = root / "deploy" / "monitoring"
dashboard_file = monitoring / "grafana-dashboard.json"
texts = []
try:
    dashboard = json.loads(dashboard_file.read_text())
    texts += [t["expr"] for p in dashboard.get("panels", []) for t in p.get("targets", [])]
except (OSError, json.JSONDecodeError) as e:
    problems.append(f"{dashboard_file.relative_to(root)}: {e}")
for rules_file in sorted(monitoring.glob("*.yml")):
    rules = yaml.safe_load(rules_file.read_text()) or {}
    texts += [r["expr"] for g in rules.get("groups", []) for r in g.get("rules", [])]
for expr in texts:
    for metric in re.findall(r"\b(gochat_[a-z_]+)", expr):
        if metric not in exported:
            problems.append(f"monitoring: {metric} is not a metric the node exports ({expr})")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
