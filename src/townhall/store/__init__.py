"""The durable store: accounts, tokens, spaces. SQLite by default, PostgreSQL for many nodes."""

from townhall.store.base import Store
from townhall.store.engine import StoreUrlError, backend_name
from townhall.store.errors import StoreUnavailable
from townhall.store.sql import SqlStore


async def open_store(url: str) -> Store:
    """The store a URL names (sqlite:///PATH or postgresql://...), migrated and ready."""
    return await SqlStore(url).open()


__all__ = [
    "SqlStore",
    "Store",
    "StoreUnavailable",
    "StoreUrlError",
    "backend_name",
    "open_store",
]
