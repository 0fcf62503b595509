"""How the nodes of one deployment talk to each other (beyond the shared state)."""
