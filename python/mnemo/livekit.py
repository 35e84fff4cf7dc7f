"""Ready-made LiveKit Agents function tools backed by a :class:`mnemo.Memory`.

A voice agent gets non-blocking long-term memory in three lines::

    from mnemo import Memory
    from mnemo.livekit import memory_tools

    memory = Memory("agent-memory.db")
    agent = Agent(instructions="...", tools=memory_tools(memory, namespace=caller_id))

``store_memory`` returns as soon as the save is accepted (microseconds: it
never waits for the database), so the model can start its reply at once; the
save is journaled, readable by ``recall_memory`` immediately, and committed
and indexed in the background. ``recall_memory`` searches the namespace's
memories, pending ones included. Errors (bad input, a full queue, a closed
memory) surface as LiveKit's :class:`~livekit.agents.llm.ToolError`, whose
message the model sees.

``livekit-agents`` is an optional dependency: importing this module without
it raises an :class:`ImportError` that says so. Nothing else in ``mnemo``
imports it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, List, Optional

try:
    from livekit.agents import function_tool
    from livekit.agents.llm import ToolError
except ImportError as e:  # pragma: no cover - exercised only without livekit
    raise ImportError(
        "mnemo.livekit needs the livekit-agents package: pip install livekit-agents"
    ) from e

from . import Memory, MnemoError

__all__ = ["memory_tools", "STORE_DESCRIPTION", "RECALL_DESCRIPTION"]

STORE_DESCRIPTION = (
    "Save a fact about the user for later conversations. Returns at once. "
    "category groups facts (e.g. 'preferences', 'facts', 'people'); key names "
    "the fact within its category (saving the same key again replaces it); "
    "value is the fact itself, in the user's language."
)

RECALL_DESCRIPTION = (
    "Search what you remember about the user. query is a few words about what "
    "you want to recall; returns the best matching memories, most relevant first."
)


def memory_tools(
    memory: Memory, namespace: Optional[str] = None, *, recall_limit: int = 5
) -> List[Any]:
    """The ``store_memory`` and ``recall_memory`` function tools, bound to
    ``memory`` and ``namespace`` (whose memories they are: one user, one
    caller). Without ``namespace``, the memory's default namespace is used.

    Pass the returned list as ``tools=`` to a LiveKit ``Agent``.
    """

    @function_tool(name="store_memory", description=STORE_DESCRIPTION)
    async def store_memory(category: str, key: str, value: str) -> str:
        try:
            receipt = memory.save(category, key, value, namespace=namespace)
        except MnemoError as e:
            raise ToolError(str(e)) from e
        return json.dumps({"status": "saved", "seq": receipt.seq})

    @function_tool(name="recall_memory", description=RECALL_DESCRIPTION)
    async def recall_memory(query: str) -> str:
        try:
            # A search takes a millisecond or so; off the event loop all the
            # same (it releases the GIL), so audio keeps flowing.
            hits = await asyncio.to_thread(
                memory.search, query, limit=recall_limit, namespace=namespace
            )
        except MnemoError as e:
            raise ToolError(str(e)) from e
        if not hits:
            return "No memories match."
        return json.dumps(
            [{"category": h.category, "key": h.key, "value": h.value} for h in hits],
            ensure_ascii=False,
        )

    return [store_memory, recall_memory]
