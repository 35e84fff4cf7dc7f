"""The LiveKit tools with the real livekit-agents package: their schemas as
LiveKit sends them to the model, calls through LiveKit's own argument
handling, and errors surfacing as LiveKit's ToolError."""

import asyncio
import json

import pytest
from livekit.agents.llm import ToolError
from livekit.agents.llm.utils import (
    build_legacy_openai_schema,
    prepare_function_arguments,
)

import mnemo
from mnemo.livekit import memory_tools


def call(tool, arguments: dict):
    """Calls a tool the way LiveKit does: JSON arguments from the model,
    parsed and validated against the tool's signature, then awaited."""
    args, kwargs = prepare_function_arguments(fnc=tool, json_arguments=json.dumps(arguments))
    return asyncio.run(tool(*args, **kwargs))


def test_the_tools_schemas_are_what_the_model_sees(tmp_path):
    with mnemo.Memory(str(tmp_path / "m.db"), namespace="caller-1") as memory:
        store, recall = memory_tools(memory)
        schema = build_legacy_openai_schema(store)
        assert schema["type"] == "function"
        s = schema["function"]
        assert s["name"] == "store_memory"
        assert "Returns at once" in s["description"]
        assert set(s["parameters"]["required"]) == {"category", "key", "value"}
        assert all(
            s["parameters"]["properties"][p]["type"] == "string"
            for p in ("category", "key", "value")
        )
        r = build_legacy_openai_schema(recall)["function"]
        assert r["name"] == "recall_memory"
        assert r["parameters"]["required"] == ["query"]


def test_a_memory_stored_through_livekit_is_recalled_at_once(tmp_path):
    with mnemo.Memory(str(tmp_path / "m.db")) as memory:
        store, recall = memory_tools(memory, namespace="caller-7")
        out = json.loads(
            call(store, {"category": "preferences", "key": "hobbies", "value": "مجھے گانا اور لکھنا پسند ہے"})
        )
        assert out["status"] == "saved" and out["seq"] >= 1
        # Read-your-writes: found before any commit.
        found = json.loads(call(recall, {"query": "گانا"}))
        assert found == [
            {"category": "preferences", "key": "hobbies", "value": "مجھے گانا اور لکھنا پسند ہے"}
        ]
        assert call(recall, {"query": "nothing like it"}) == "No memories match."
        # Bound to its namespace: another caller sees nothing.
        _, other = memory_tools(memory, namespace="caller-8")
        assert call(other, {"query": "گانا"}) == "No memories match."
        got = memory.get("preferences", "hobbies", namespace="caller-7")
        assert got is not None and got.value == "مجھے گانا اور لکھنا پسند ہے"


def test_bad_input_surfaces_as_a_tool_error_naming_the_field(tmp_path):
    with mnemo.Memory(str(tmp_path / "m.db"), namespace="caller-1") as memory:
        store, _ = memory_tools(memory)
        with pytest.raises(ToolError) as e:
            call(store, {"category": "facts", "key": "", "value": "x"})
        assert "key" in e.value.message
        assert memory.list() == []


def test_a_closed_memory_is_a_tool_error_too(tmp_path):
    memory = mnemo.Memory(str(tmp_path / "m.db"), namespace="caller-1")
    store, recall = memory_tools(memory)
    memory.close()
    with pytest.raises(ToolError):
        call(store, {"category": "facts", "key": "k", "value": "v"})
