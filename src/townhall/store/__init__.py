"""The durable store: accounts, tokens, spaces. SQLite by default."""

from townhall.store.base import Store
from townhall.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store"]
