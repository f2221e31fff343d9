"""Queries shared by the benchmarks and the tests."""

DASHBOARD = """
query Dashboard($first: Int!) {
  devices(first: $first) {
    totalCount
    edges { node {
      id name status labels
      asset { name kind parent { name } }
      metadata
      shadow { version reported desired delta }
      latest(metrics: ["temperature", "vibration"]) { metric value time }
      telemetry(metric: "temperature", bucket: "5m") { points { time value } stats { avg max } }
    } }
  }
}
"""

# The issue-13 subset: Postgres-only, the shape bench/vs_postgraphile.py compares.
SUBSET = """
query Subset($first: Int!) {
  devices(first: $first) {
    totalCount
    edges { node { id name status metadata asset { name kind parent { name } } } }
  }
}
"""

QUERIES = {"dashboard": DASHBOARD, "subset": SUBSET}
