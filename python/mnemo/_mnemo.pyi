"""Type stubs of ``mnemo._mnemo``, the extension module behind ``mnemo``."""

import builtins
import datetime
import os
from asyncio import Future
from types import TracebackType
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Type, Union, final

__all__ = [
    "Closed",
    "DeadLettered",
    "DiskFull",
    "InvalidConfig",
    "InvalidInput",
    "ListPage",
    "Memory",
    "MemoryRecord",
    "MnemoError",
    "NotCommittedYet",
    "NotIndexed",
    "OpenError",
    "Outcome",
    "Overloaded",
    "Receipt",
    "SearchHit",
    "Stats",
    "Summary",
    "WriteFailed",
    "__version__",
]

__version__: str

_JSON = Union[None, bool, int, float, str, List["_JSON"], Dict[str, "_JSON"]]
_Status = Literal["accepted", "durable", "indexed", "failed", "unknown"]
_OutcomeKind = Literal[
    "inserted",
    "updated",
    "unchanged",
    "deleted",
    "not_found",
    "superseded",
    "outdated",
    "unknown",
]

class MnemoError(Exception):
    """The base class of every error mnemo raises."""

class InvalidInput(MnemoError, ValueError):
    """A field of a request is malformed; nothing was written."""

    field: str
    """``namespace``, ``category``, ``key``, ``value``, ``metadata``, ``query``,
    ``limit`` or ``cursor``."""
    reason: str
    """What is wrong with it, in words an LLM can act on."""

class InvalidConfig(MnemoError, ValueError):
    """A configuration value given to ``Memory(...)`` is out of range."""

class Overloaded(MnemoError):
    """Too many saves wait to be committed; retry shortly. Nothing was written."""

    pending: int
    pending_bytes: int

class Closed(MnemoError):
    """The memory was closed (or its engine stopped)."""

class DiskFull(MnemoError, OSError):
    """No room for the crash journal: the save was not accepted."""

    path: str

class NotCommittedYet(MnemoError):
    """A wait ended: the writer has failed to commit for longer than
    ``busy_deadline_ms``. The save is kept and committed later."""

    waited: float
    """Seconds the writer has been failing."""
    reason: str

class DeadLettered(MnemoError):
    """The database rejected this save for its content (kept in ``dead_letters``)."""

    reason: str

class WriteFailed(MnemoError):
    """The save was lost (only possible with ``journal=False``)."""

    reason: str

class NotIndexed(MnemoError):
    """Committed, but not indexed yet; the next open indexes it."""

    reason: str

class OpenError(MnemoError):
    """The database could not be opened."""

    path: str
    reason: str

@final
class Outcome:
    """What the commit did with one save or forget.

    Compares equal to its ``kind`` string: ``await receipt.durable() == "inserted"``.
    """

    @property
    def kind(self) -> _OutcomeKind:
        """``"inserted"``, ``"updated"``, ``"unchanged"``, ``"deleted"``,
        ``"not_found"``, ``"superseded"`` or ``"outdated"``."""
    @property
    def version(self) -> Optional[int]:
        """The version written (or already holding the value, for ``"unchanged"``)."""
    @property
    def superseded_by(self) -> Optional[int]:
        """For ``"superseded"``: the sequence number of the save that replaced it."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Receipt:
    """Proof that a save (or forget) was accepted, and a way to learn when it
    is durable and when the index has it. Awaiting is optional."""

    @property
    def seq(self) -> int:
        """Sequence number: unique and increasing within one open memory."""
    @property
    def status(self) -> _Status:
        """``"accepted"``, ``"durable"``, ``"indexed"`` or ``"failed"``. Never blocks."""
    @property
    def outcome(self) -> Optional[Outcome]:
        """What the commit did, once durable; None before."""
    @property
    def failure(self) -> Optional[str]:
        """Why the save was not committed, when ``status`` is ``"failed"``."""
    def durable(self) -> Future[Outcome]:
        """Resolves with the :class:`Outcome` once the save committed.

        Needs a running asyncio loop. Raises (when awaited) ``DeadLettered``,
        ``NotCommittedYet`` or ``Closed``. Cancelling stops only the wait.
        """
    def indexed(self) -> Future[Outcome]:
        """Resolves once the search index has the save (``NotIndexed`` if the
        memory closed between the commit and indexing)."""
    def wait_durable(self, timeout: Optional[float] = None) -> Outcome:
        """Blocks (GIL released) until durable; ``TimeoutError`` after ``timeout`` s."""
    def wait_indexed(self, timeout: Optional[float] = None) -> Outcome:
        """Blocks (GIL released) until indexed; ``TimeoutError`` after ``timeout`` s."""

@final
class MemoryRecord:
    """A stored memory."""

    @property
    def namespace(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def metadata(self) -> Optional[Dict[str, _JSON]]:
        """The metadata dict, or None."""
    @property
    def version(self) -> Optional[int]:
        """The committed version; None while the latest save is not committed yet."""
    @property
    def updated_at(self) -> datetime.datetime:
        """When the latest save was accepted (timezone-aware, UTC)."""
    @property
    def updated_at_ms(self) -> int:
        """The same, in milliseconds since the Unix epoch."""
    def to_dict(self) -> Dict[str, Any]:
        """The fields as a dict."""
    def __eq__(self, other: object, /) -> bool: ...

@final
class SearchHit:
    """A search result: a memory and its relevance."""

    @property
    def record(self) -> MemoryRecord: ...
    @property
    def score(self) -> float:
        """Relevance, higher is better."""
    @property
    def fresh(self) -> bool:
        """True if matched in memory, before the index had it."""
    @property
    def namespace(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def metadata(self) -> Optional[Dict[str, _JSON]]: ...
    @property
    def version(self) -> Optional[int]: ...
    @property
    def updated_at(self) -> datetime.datetime: ...
    def to_dict(self) -> Dict[str, Any]:
        """The record's fields with ``score`` and ``fresh``."""

@final
class ListPage:
    """One page of ``Memory.list_page``."""

    @property
    def records(self) -> List[MemoryRecord]: ...
    @property
    def next_cursor(self) -> Optional[str]:
        """Pass as ``cursor=`` for the next page; None when nothing follows."""
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[MemoryRecord]: ...

@final
class Summary:
    """A summary of recent values (the last 1,024 at most)."""

    @property
    def count(self) -> int: ...
    @property
    def p50(self) -> float: ...
    @property
    def p99(self) -> float: ...
    @property
    def max(self) -> float: ...
    def to_dict(self) -> Dict[str, float]: ...

@final
class Stats:
    """The engine's counters (since open)."""

    @property
    def accepted(self) -> int: ...
    @property
    def rejected_invalid(self) -> int: ...
    @property
    def rejected_overloaded(self) -> int: ...
    @property
    def coalesced(self) -> int: ...
    @property
    def committed(self) -> int: ...
    @property
    def unchanged(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def dead_lettered(self) -> int: ...
    @property
    def batches(self) -> int: ...
    @property
    def batch_size(self) -> Summary: ...
    @property
    def flush_ms(self) -> Summary: ...
    @property
    def pending(self) -> int: ...
    @property
    def pending_bytes(self) -> int: ...
    @property
    def overlay_keys(self) -> int: ...
    @property
    def committed_change(self) -> int: ...
    @property
    def index_watermark(self) -> int: ...
    @property
    def index_lag_changes(self) -> int: ...
    @property
    def index_lag_ms(self) -> Summary: ...
    @property
    def replayed(self) -> int: ...
    @property
    def journal_bytes(self) -> int: ...
    @property
    def writer_stalled_ms(self) -> int: ...
    @property
    def writer_stall_reason(self) -> Optional[str]: ...
    @property
    def write_retries(self) -> int: ...
    @property
    def index_failures(self) -> int: ...
    @property
    def index_error(self) -> Optional[str]: ...
    @property
    def journal_unrecovered(self) -> int: ...
    @property
    def journal_unrecovered_bytes(self) -> int: ...
    @property
    def journal_quarantined(self) -> List[str]: ...
    def to_dict(self) -> Dict[str, Any]:
        """Every counter in a dict (summaries as nested dicts)."""

@final
class Memory:
    """Long-term memory for agents: saves return in microseconds, reads see
    them at once, commits are batched, and a :class:`Receipt` tells when each
    save is durable and indexed.

    ``path`` is an SQLite file or a ``postgres://`` URL. ``namespace`` is the
    default for calls that do not name one. Configuration keywords:
    ``quiet_window_ms``, ``max_wait_ms``, ``max_batch``, ``max_batch_bytes``,
    ``max_pending``, ``max_pending_bytes``, ``max_value_bytes``,
    ``max_metadata_bytes``, ``max_key_part_bytes``, ``synchronous``,
    ``busy_deadline_ms``, ``read_connections``, ``journal``, ``journal_sync``,
    ``journal_segment_bytes``, ``journal_dir``; an unknown one raises
    ``TypeError``.
    """

    def __new__(
        cls,
        path: Union[str, "os.PathLike[str]"],
        *,
        namespace: Optional[str] = None,
        retrieval: Literal["lexical", "hybrid"] = "lexical",
        quiet_window_ms: float = ...,
        max_wait_ms: float = ...,
        max_batch: int = ...,
        max_batch_bytes: int = ...,
        max_pending: int = ...,
        max_pending_bytes: int = ...,
        max_value_bytes: int = ...,
        max_metadata_bytes: int = ...,
        max_key_part_bytes: int = ...,
        synchronous: Literal["off", "normal", "full"] = ...,
        busy_deadline_ms: float = ...,
        read_connections: int = ...,
        journal: bool = ...,
        journal_sync: Literal["never", "batch", "always"] = ...,
        journal_segment_bytes: int = ...,
        journal_dir: Union[str, "os.PathLike[str]", None] = ...,
    ) -> "Memory": ...
    def save(
        self,
        category: str,
        key: str,
        value: str,
        *,
        namespace: Optional[str] = None,
        metadata: Union[Mapping[str, _JSON], str, None] = None,
    ) -> Receipt:
        """Saves a memory; returns in microseconds, never waits on the database.

        Raises ``InvalidInput`` (``.field``), ``Overloaded``, ``DiskFull`` or ``Closed``.
        """
    def forget(self, category: str, key: str, *, namespace: Optional[str] = None) -> Receipt:
        """Forgets a memory; returns at once like ``save``."""
    def get(
        self, category: str, key: str, *, namespace: Optional[str] = None
    ) -> Optional[MemoryRecord]:
        """The memory under a key (pending saves included), or None."""
    def list(
        self, category: Optional[str] = None, *, namespace: Optional[str] = None
    ) -> builtins.list[MemoryRecord]:
        """Every memory of the namespace (or one category), by category and key."""
    def list_page(
        self,
        category: Optional[str] = None,
        *,
        namespace: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> ListPage:
        """One page of ``list`` (``limit`` 1-1000, default 100) after ``cursor``."""
    def search(
        self,
        query: str,
        *,
        category: Optional[str] = None,
        limit: int = 5,
        namespace: Optional[str] = None,
    ) -> builtins.list[SearchHit]:
        """The best ``limit`` memories for the words of ``query``, best first."""
    def namespaces(self) -> builtins.list[str]:
        """Every namespace holding at least one memory."""
    def stats(self) -> Stats:
        """The engine's counters now."""
    def flush(self) -> None:
        """Asks for a flush now; does not wait."""
    def close(self) -> None:
        """Commits and indexes everything accepted, then stops. Idempotent."""
    def aclose(self) -> Future[None]:
        """``close()`` without blocking the asyncio loop."""
    @property
    def closed(self) -> bool: ...
    @property
    def namespace(self) -> Optional[str]: ...
    @property
    def path(self) -> str:
        """The database path, or the PostgreSQL URL without its password."""
    def __enter__(self) -> "Memory": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
    async def __aenter__(self) -> "Memory": ...
    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
