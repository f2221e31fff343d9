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
