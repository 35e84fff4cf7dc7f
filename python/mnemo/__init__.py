"""mnemo: long-term memory for LLM agents that never makes them wait.

An agent's ``store_memory(category, key, value)`` tool call returns in
microseconds with a :class:`Receipt`; the save is readable at once, committed
with its neighbours in one transaction after a short quiet window, then
indexed for full-text search. The receipt says when each step is done::

    import mnemo

    with mnemo.Memory("agent.db", namespace="user-42") as memory:
        receipt = memory.save("hobbies", "music", "likes singing")  # microseconds
        memory.get("hobbies", "music").value          # readable at once
        memory.search("singing")[0].key                # searchable at once
        receipt.wait_durable(timeout=5)                # optional: committed

    # In asyncio code: ``await receipt.durable()`` / ``await receipt.indexed()``.

The database is an SQLite file (created if missing) or a PostgreSQL database
given as a ``postgres://`` URL. Every save goes to a crash journal before
``save`` returns, so a process killed at any moment loses nothing that was
acknowledged: the next open commits it.

Errors are subclasses of :class:`MnemoError`: :class:`InvalidInput` (with
``.field``), :class:`Overloaded`, :class:`Closed`, :class:`DiskFull`,
:class:`NotCommittedYet`, :class:`DeadLettered`, :class:`WriteFailed`,
:class:`NotIndexed`, :class:`OpenError` and :class:`InvalidConfig`.
"""

from ._mnemo import (
    Closed,
    DeadLettered,
    DiskFull,
    InvalidConfig,
    InvalidInput,
    ListPage,
    Memory,
    MemoryRecord,
    MnemoError,
    NotCommittedYet,
    NotIndexed,
    OpenError,
    Outcome,
    Overloaded,
    Receipt,
    SearchHit,
    Stats,
    Summary,
    WriteFailed,
    __version__,
)

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
