"""A disk cache of text observations and features (sqlite, one file per folder).

Keys are (scene, position rounded to ``pos_res`` metres, heading rounded to ``deg_res``
degrees, captioner identity); a captioner whose weights or settings change has another
identity, so stale entries are never returned (``prune`` deletes them).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

from vlnav import VlnavError


class ObservationCache:
    def __init__(self, path: str | Path, pos_res: float = 0.05, deg_res: float = 1.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.pos_res = pos_res
        self.deg_res = deg_res
        self._lock = threading.Lock()
        # several processes (evaluation and collection workers) may share one file
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=120)
        try:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS obs (key TEXT PRIMARY KEY, identity TEXT, value BLOB)"
            )
            self._db.commit()
        except sqlite3.DatabaseError as e:  # e.g. "file is not a database"
            self._db.close()
            raise VlnavError(
                f"observation cache {self.path}: {e} (delete the file to rebuild it)"
            ) from None
        self.hits = 0
        self.misses = 0

    def key(
        self, scene: str, position: Any, heading: float, identity: str, kind: str = "text"
    ) -> str:
        x = round(float(position[0]) / self.pos_res)
        z = round(float(position[2]) / self.pos_res)
        h = round(math.degrees(float(heading)) / self.deg_res) % round(360 / self.deg_res)
        return f"{kind}|{identity}|{scene}|{x}|{z}|{h}"

    def get(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM obs WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        if key.startswith("feat|"):
            return np.load(_BytesIO(row[0]), allow_pickle=False)
        return json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        if isinstance(value, np.ndarray):
            buf = _BytesIO()
            np.save(buf, value, allow_pickle=False)
            blob: Any = buf.getvalue()
        else:
            blob = json.dumps(value)
        identity = key.split("|")[1]
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO obs (key, identity, value) VALUES (?, ?, ?)",
                (key, identity, blob),
            )
            self._db.commit()

    def prune(self, keep_identities: set[str]) -> int:
        """Delete entries of captioners not in ``keep_identities``; returns how many."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT identity FROM obs").fetchall()
            stale = [r[0] for r in rows if r[0] not in keep_identities]
            n = 0
            for ident in stale:
                n += self._db.execute("DELETE FROM obs WHERE identity = ?", (ident,)).rowcount
            self._db.commit()
        return n

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM obs").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def _BytesIO(data: bytes = b""):  # noqa: N802  (a tiny alias keeps imports local)
    import io

    return io.BytesIO(data)
