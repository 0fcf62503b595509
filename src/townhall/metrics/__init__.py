"""What a node tells Prometheus (GET /metrics), built from counters kept anyway."""
