"""The per-session store file that both engines keep in the session's auth directory.

neonize (whatsmeow) keeps its device keys in a SQLite database; the sandbox keeps its simulated
credentials in one too, so snapshots and restores take exactly the same path for both.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

STORE_FILENAME = "store.sqlite3"


def store_path(auth_dir: Path) -> Path:
    return Path(auth_dir) / STORE_FILENAME


def delete_store(auth_dir: Path) -> None:
    """Remove the store with its SQLite side files (after a logout the keys are worthless)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{store_path(auth_dir)}{suffix}").unlink(missing_ok=True)


class KeyValueStore:
    """A tiny key-value table in the session's SQLite store (the sandbox's credentials)."""

    def __init__(self, auth_dir: Path) -> None:
        Path(auth_dir).mkdir(parents=True, exist_ok=True)
        self.path = store_path(auth_dir)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=10)
        connection.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT)")
        return connection

    def get(self, key: str) -> str | None:
        if not self.path.exists():
            return None
        with self._connect() as connection:
            row = connection.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        connection.close()
        return row[0] if row else None

    def set(self, **values: str) -> None:
        with self._connect() as connection:
            connection.executemany(
                "INSERT INTO kv (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )
        connection.close()
