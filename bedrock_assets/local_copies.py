"""Local copies of the S3 objects this process wrote or read, each kept with its ETag.

A step that reads what an earlier step in the same process wrote or read, such as merged_results
reading batch_job_outputs' Parquet and the canonical part batch_job_outputs read in one stage run,
then pays one conditional GET instead of a download. A copy is used only while the object's ETag is
unchanged, so a change made by anyone else is always seen. The copies live in one temporary
directory, removed at exit (not after a SIGKILL), and are evicted least recently used beyond
``BEDROCK_ASSETS_LOCAL_COPIES_MB`` (default 2048; 0 turns them off); an object larger than a quarter
of that is not kept. A kept file is never written again: ``adopt`` takes the caller's file over, and
readers get hard links they must only read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from bedrock_assets.uris import S3Location

LIMIT_ENV = "BEDROCK_ASSETS_LOCAL_COPIES_MB"
DEFAULT_LIMIT_MB = 2048


@dataclass(frozen=True)
class LocalCopy:
    path: Path
    etag: str
    size: int


class LocalCopies:
    """A bounded, thread-safe map of S3 location -> local copy of the object at one ETag."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._copies: OrderedDict[S3Location, LocalCopy] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self._serial = 0

    def _directory(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="bedrock-assets-copies-"))
            weakref.finalize(self, shutil.rmtree, self._dir, True)
        return self._dir

    def adopt(self, loc: S3Location, path: Path, etag: str) -> None:
        """Keep ``path`` as the object at ``loc`` with ``etag``: the file is moved here (the caller hands
        it over and must not use the path again); too large a file stays where it is."""
        size = path.stat().st_size
        if not self.enabled or size * 4 > self.limit_bytes:
            self.forget(loc)
            return
        with self._lock:
            self._serial += 1
            target = self._directory() / f"{self._serial}{path.suffix}"
        try:
            shutil.move(path, target)
        except OSError:  # the directory was removed under us (a /tmp cleaner): keep nothing, start afresh
            with self._lock:
                self._copies.clear()
                self._bytes = 0
                self._dir = None
            return
        with self._lock:
            self._drop(loc)
            self._copies[loc] = LocalCopy(target, etag, size)
            self._bytes += size
            while self._bytes > self.limit_bytes:
                self._drop(next(iter(self._copies)))

    @property
    def enabled(self) -> bool:
        return self.limit_bytes > 0

    def etag_of(self, loc: S3Location) -> str | None:
        """The ETag of the copy held for ``loc``, if any."""
        with self._lock:
            copy = self._copies.get(loc)
            return copy.etag if copy else None

    def link(self, loc: S3Location, etag: str, target: Path) -> bool:
        """Put the copy of ``loc`` at ``etag`` at ``target`` (a hard link when possible); False if none is held."""
        with self._lock:
            copy = self._copies.get(loc)
            if copy is None or copy.etag != etag:
                return False
            self._copies.move_to_end(loc)
            try:
                try:
                    os.link(copy.path, target)
                except OSError:
                    shutil.copyfile(copy.path, target)
            except OSError:  # the copy is gone (a /tmp cleaner): the caller downloads the object
                self._drop(loc)
                return False
            return True

    def forget(self, loc: S3Location) -> None:
        with self._lock:
            self._drop(loc)

    def _drop(self, loc: S3Location) -> None:
        copy = self._copies.pop(loc, None)
        if copy is not None:
            self._bytes -= copy.size
            copy.path.unlink(missing_ok=True)


def _limit_bytes() -> int:
    try:
        return max(0, int(os.environ.get(LIMIT_ENV, DEFAULT_LIMIT_MB))) << 20
    except ValueError:
        raise ValueError(f"{LIMIT_ENV}={os.environ[LIMIT_ENV]!r}: expected a whole number of megabytes") from None


COPIES = LocalCopies(_limit_bytes())
