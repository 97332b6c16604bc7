"""The sweep's results file: JSON lines, appended one finished point at a time.

Each line is one complete JSON record with a unique ``key``. A record is written with a
single ``write`` of the whole line on a file opened for appending, then flushed to disk
(``fsync``) before the next point is reported, so a sweep killed at any moment leaves every
finished point on disk and at most one partial last line. :meth:`ResultsFile.load` drops
such a partial line (and truncates it away, so the next record starts on a fresh line);
a complete line that is not JSON is an error naming the file and line number.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputError
from ..report import json_ready

__all__ = ["ResultsFile"]


class ResultsFile:
    """Append-only JSON-lines results of one sweep.

    Parameters
    ----------
    path : path
        The ``.jsonl`` file (created on the first :meth:`append`).
    """

    def __init__(self, path):
        self.path = Path(path)

    def load(self, repair: bool = True) -> dict[str, dict]:
        """Records by key, in file order; a key recorded again (a retried point) takes its
        latest record.

        ``repair``: truncate a partial last line (left by a killed writer).
        """
        if not self.path.exists():
            return {}
        raw = self.path.read_bytes()
        end = raw.rfind(b"\n") + 1
        if end < len(raw) and repair:
            with open(self.path, "r+b") as f:
                f.truncate(end)
        records: dict[str, dict] = {}
        for lineno, line in enumerate(raw[:end].split(b"\n")[:-1], 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise InputError(f"{self.path}:{lineno}: not a JSON record ({exc}); remove "
                                 f"the line or start the sweep in a new folder") from None
            key = rec.get("key") if isinstance(rec, dict) else None
            if not isinstance(key, str):
                raise InputError(f"{self.path}:{lineno}: record without a string 'key'")
            records[key] = rec
        return records

    def append(self, record: dict) -> None:
        """Append ``record`` as one line and flush it to disk."""
        line = (json.dumps(json_ready(record), allow_nan=False, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
