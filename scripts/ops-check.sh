#!/usr/bin/env bash
# Check the operations kit (docs/operations.md): the Grafana dashboard and the
# Prometheus alerting rules in config/ name only metrics Herald exports, the
# rules are valid (`promtool check rules`) and their unit tests pass
# (`promtool test rules`). Installs promtool (Debian's prometheus package,
# scripts/lib.sh) when it is missing.
#
# The exported metrics are the `pub const X: &str = "herald_…";` list of
# engine/src/telemetry/names.rs plus every "herald_…" string literal in
# engine/src (a name registered outside names.rs counts once it lands). A
# histogram (registered with histogram!) is named by its series only:
# NAME_bucket, NAME_sum, NAME_count; no other metric takes those suffixes.
#
# What is read: in the dashboard, every `expr` (whose PromQL promtool also
# parses, Grafana's $variables replaced) and each template variable's query;
# in the rules, every `expr`, and each alert's `for`, `severity`, `summary`,
# `description` and `runbook`, which must be docs/operations.md#ANCHOR with
# ANCHOR a heading of that file; in the unit tests, every `series` and
# `expr`. A metric name is an identifier starting with herald_ outside a
# quoted string (label values are not names).
#
# Overrides, to check another copy (a scratch copy with a bogus metric fails,
# naming it):
#   HERALD_DASHBOARD=/tmp/x.json    the dashboard (config/grafana/herald-dashboard.json)
#   HERALD_ALERTS=/tmp/x.yml        the rules (config/prometheus/herald-alerts.yml)
#   HERALD_ALERTS_TEST=/tmp/t.yml   the rules' unit tests
#                                   (config/prometheus/herald-alerts.test.yml)
# The unit tests load `herald-alerts.yml`: they run on copies of the two
# files side by side in a scratch folder, so an overridden rules file is the
# one tested.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

dashboard=${HERALD_DASHBOARD:-config/grafana/herald-dashboard.json}
rules=${HERALD_ALERTS:-config/prometheus/herald-alerts.yml}
tests=${HERALD_ALERTS_TEST:-config/prometheus/herald-alerts.test.yml}
doc=docs/operations.md
for f in "$dashboard" "$rules" "$tests" "$doc" engine/src/telemetry/names.rs; do
  [ -f "$f" ] || { echo "ops-check: $f not found" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# (a) Metric names, the alerts' fields and runbook anchors; writes the
# dashboard's PromQL as recording rules for promtool to parse.
python3 - "$dashboard" "$rules" "$tests" "$doc" "$work/dashboard-exprs.yml" <<'PY'
import json
import os
import re
import sys

dashboard, rules, tests, doc, exprs_out = sys.argv[1:6]
errors = []


def fail(msg):
    if msg not in errors:
        errors.append(msg)


# --- the exported set -------------------------------------------------------
NAMES_RS = "engine/src/telemetry/names.rs"
consts = dict(re.findall(r'pub const (\w+): &str = "(herald_[a-z0-9_]+)";',
                         open(NAMES_RS, encoding="utf-8").read()))
if not consts:
    fail(f"{NAMES_RS}: no `pub const X: &str = \"herald_…\";` found")
exported = set(consts.values())
from_literals = set()
histograms = set()
LITERAL = re.compile(r'"(herald_[a-z0-9_]+)"')
HIST_CONST = re.compile(r'histogram!\(\s*(?:[A-Za-z_][\w:]*::)?([A-Z][A-Z0-9_]*)\b')
HIST_LITERAL = re.compile(r'histogram!\(\s*"(herald_[a-z0-9_]+)"')
for root, _dirs, files in os.walk("engine/src"):
    for f in sorted(files):
        if not f.endswith(".rs"):
            continue
        text = open(os.path.join(root, f), encoding="utf-8").read()
        from_literals |= set(LITERAL.findall(text))
        histograms |= {consts[c] for c in HIST_CONST.findall(text) if c in consts}
        histograms |= set(HIST_LITERAL.findall(text))
exported |= from_literals
SUFFIXES = ("_bucket", "_sum", "_count")

QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
METRIC = re.compile(r"(?<![A-Za-z0-9_:])herald_[A-Za-z0-9_:]*")
used = {}  # name -> files


def check_names(where, expr):
    """Fail, naming the offender, on each herald_ name that is not exported."""
    names = METRIC.findall(QUOTED.sub('""', expr))
    for name in names:
        base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), None)
        if name in histograms:
            fail(f"{where}: {name} is a histogram: name its series {name}_bucket, _sum or _count")
        elif name in exported or (base is not None and base in histograms):
            used.setdefault(name, set()).add(where.split(":")[0])
        else:
            fail(f"{where}: {name} is not an exported metric ({NAMES_RS}, or a \"herald_…\" literal in engine/src)")
    return names


# --- a small YAML scalar reader (no PyYAML needed) ---------------------------
KEY = re.compile(r"^(\s*)(-\s+)?([A-Za-z_]+):(?:\s+(.*?))?\s*$")


def indent_of(line):
    return len(line) - len(line.lstrip())


def unquote(v):
    if len(v) >= 2 and v[0] == v[-1] == "'":
        return v[1:-1].replace("''", "'")
    if len(v) >= 2 and v[0] == v[-1] == '"':
        try:
            return json.loads(v)
        except ValueError:
            return v[1:-1]
    return re.sub(r"\s+#.*$", "", v)


def scalars(path, keys):
    """(line, key, value) of each `key: value` with key in keys: quotes
    removed, block (| >) and multi-line scalars joined."""
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = KEY.match(lines[i])
        if not m or m.group(3) not in keys or lines[i].lstrip().startswith("#"):
            i += 1
            continue
        col = len(m.group(1)) + len(m.group(2) or "")
        raw = m.group(4) or ""
        start = i
        parts = [] if raw[:1] in ("|", ">") else [raw]
        i += 1
        while i < len(lines) and (not lines[i].strip() or indent_of(lines[i]) > col):
            if lines[i].strip() and not lines[i].lstrip().startswith("#"):
                parts.append(lines[i].strip())
            i += 1
        value = "\n".join(parts) if raw[:1] in ("|", ">") else unquote(" ".join(parts))
        yield start + 1, m.group(3), value


# --- docs/operations.md anchors ----------------------------------------------
def slug(heading):
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


anchors = set()
for line in open(doc, encoding="utf-8"):
    h = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
    if h:
        anchors.add(slug(h.group(1)))
    anchors |= set(re.findall(r'<a (?:id|name)="([^"]+)"', line))

# --- the dashboard --------------------------------------------------------------
n_dash = 0
try:
    dash = json.load(open(dashboard, encoding="utf-8"))
except ValueError as e:
    fail(f"{dashboard}: not JSON: {e}")
    dash = {}
dash_exprs = []


def walk(node, title):
    global n_dash
    if isinstance(node, dict):
        if "title" in node and ("targets" in node or "panels" in node):
            title = f'panel {node.get("id")} "{node["title"]}"'
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                n_dash += 1
                where = f"{dashboard}: {title}"
                check_names(where, v)
                dash_exprs.append((title, node.get("refId", "X"), v))
            else:
                walk(v, title)
    elif isinstance(node, list):
        for v in node:
            walk(v, title)


walk(dash.get("panels", []), "dashboard")
variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
for name, var in variables.items():
    if var.get("type") != "query":
        continue
    q = var.get("query")
    q = q.get("query", "") if isinstance(q, dict) else (q or "")
    for text in {q, var.get("definition", "")}:
        if text:
            check_names(f'{dashboard}: template variable "{name}"', text)
ds = variables.get("datasource", {})
if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    fail(f'{dashboard}: no Prometheus datasource template variable "datasource"')
if "instance" not in variables:
    fail(f'{dashboard}: no template variable "instance"')
if dash and n_dash == 0:
    fail(f"{dashboard}: no expr found")

# The dashboard's PromQL, as recording rules promtool can parse.
with open(exprs_out, "w", encoding="utf-8") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for title, ref, expr in dash_exprs:
        e = re.sub(r"\$\{?__\w+\}?", "5m", expr)
        e = re.sub(r"\$\{\w+(?::\w+)?\}|\$\w+|\[\[\w+\]\]", ".*", e)
        pid = re.match(r"panel (\S+)", title)
        name = f"dashboard:panel_{pid.group(1) if pid else 0}_{ref}"
        out.write(f"      - record: {name}\n        expr: {json.dumps(e)}\n")

# --- the rules -------------------------------------------------------------------
n_rules = 0
for line, _key, expr in scalars(rules, {"expr"}):
    n_rules += 1
    check_names(f"{rules}:{line}", expr)
if n_rules == 0:
    fail(f"{rules}: no expr found")

lines = open(rules, encoding="utf-8").read().split("\n")
alerts = []
for i, line in enumerate(lines):
    m = re.match(r"^(\s*)-\s+alert:\s*(\S+)", line)
    if not m:
        continue
    col = len(m.group(1))
    block = []
    for nxt in lines[i + 1:]:
        if nxt.strip() and not nxt.lstrip().startswith("#") and indent_of(nxt) <= col:
            break
        block.append(nxt)
    fields = {}
    for b in block:
        f = re.match(r"^\s*(for|severity|summary|description|runbook):\s*(.*?)\s*$", b)
        if f:
            fields[f.group(1)] = unquote(f.group(2))
    alerts.append(m.group(2))
    where = f"{rules}:{i + 1}: alert {m.group(2)}"
    for need in ("for", "severity", "summary", "description", "runbook"):
        if not fields.get(need):
            fail(f"{where}: no {need}")
    rb = fields.get("runbook", "")
    if rb:
        target, _, anchor = rb.partition("#")
        if target != doc:
            fail(f"{where}: runbook {rb} is not {doc}#ANCHOR")
        elif anchor not in anchors:
            fail(f"{where}: runbook anchor #{anchor} is not a heading of {doc}")
if not alerts:
    fail(f"{rules}: no alert found")

# --- the unit tests ------------------------------------------------------------
n_tests = 0
for line, _key, value in scalars(tests, {"series", "expr"}):
    n_tests += 1
    check_names(f"{tests}:{line}", value)

if errors:
    for e in errors:
        print(f"ops-check: FAIL: {e}", file=sys.stderr)
    sys.exit(1)
extra = sorted({n if n in exported else re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
               - set(consts.values()))
print(f"==> {len(exported)} exported metric names ({len(consts)} in {NAMES_RS}, "
      f"{len(from_literals - set(consts.values()))} more from literals), {len(histograms)} histograms")
print(f"==> dashboard: {n_dash} expressions; rules: {n_rules} expressions, {len(alerts)} alerts; "
      f"unit tests: {n_tests} series and expressions; {len(used)} metric names used, all exported")
if extra:
    print(f"==> used and not in {NAMES_RS}: {', '.join(extra)}")
PY

# (b) and (c): promtool.
if ! command -v promtool >/dev/null 2>&1; then
  start=$SECONDS
  ensure_promtool
  echo "==> promtool installed in $((SECONDS - start)) s"
fi
promtool --version 2>&1 | head -n 1
promtool check rules "$rules"
echo "==> the dashboard's PromQL"
promtool check rules "$work/dashboard-exprs.yml"
cp "$rules" "$work/herald-alerts.yml"
cp "$tests" "$work/herald-alerts.test.yml"
echo "==> unit tests: $tests on $rules"
(cd "$work" && promtool test rules herald-alerts.test.yml)
