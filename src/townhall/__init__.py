"""townhall: live audio rooms that stay up when the crowd arrives."""

__version__ = "0.1.0"
