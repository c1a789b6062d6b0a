"""examples/: the Prometheus app runs against the real Redis, and the Grafana dashboard asks only
for what it exposes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_app(redis_url: str, prefix: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "prometheus_app.py"), "--redis", redis_url,
         "--prefix", prefix],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_prometheus_app_prints_its_exact_counts(redis_url: str, prefix: str) -> None:
    """The example's 10 store loads and 50 L1 hits are in the exposition it prints."""
    samples = {
        (s.name, s.labels.get("layer"), s.labels.get("result")): s.value
        for family in text_string_to_metric_families(run_app(redis_url, prefix))
        for s in family.samples
        if s.labels.get("namespace") == "products"
    }
    requests = "tiercache_requests_total"
    assert samples[(requests, "L1:memory", "hit")] == 50
    assert samples[(requests, "L1:memory", "miss")] == 10
    assert samples[(requests, "L2:redis", "miss")] == 10
    assert samples[(requests, "store", "hit")] == 10
    assert samples[(requests, "store", "miss")] == 0


def test_grafana_dashboard_queries_exposed_metrics(redis_url: str, prefix: str) -> None:
    """Every metric and label the dashboard's queries use is one the collector exposes (or
    Prometheus adds)."""
    dashboard = json.loads((EXAMPLES / "grafana-tiercache.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs += [variable["definition"] for variable in dashboard["templating"]["list"]
              if "definition" in variable]
    assert len(exprs) > 20
    families = list(text_string_to_metric_families(run_app(redis_url, prefix)))
    # By family type, so a family with no series in this run (write-back) still counts.
    suffixes = {"counter": ("_total",), "summary": ("", "_count", "_sum"), "gauge": ("",)}
    exposed = {family.name + suffix for family in families for suffix in suffixes[family.type]}
    labels = {name for family in families for s in family.samples for name in s.labels}
    used = {name for expr in exprs for name in re.findall(r"\btiercache_[a-z_]+", expr)}
    assert used - exposed == set()
    grouped = {name.strip() for expr in exprs
               for group in re.findall(r"by \(([^)]*)\)", expr) for name in group.split(",")}
    selected = {name for expr in exprs for name in re.findall(r"(\w+)=~?\"", expr)}
    # job and instance are the target labels Prometheus adds to every scraped series.
    assert grouped | selected <= labels | {"job", "instance"}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
