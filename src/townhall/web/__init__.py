"""Pages and static assets: shells served as-is, filled in by JS from the API."""
