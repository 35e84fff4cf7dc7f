"""A LiveKit voice agent with mnemo as its long-term memory.

    pip install . livekit-agents livekit-plugins-openai livekit-plugins-silero
    python examples/livekit_agent.py dev

Each caller's memories live in their own namespace (here the participant's
identity). ``store_memory`` returns in microseconds, so the agent starts its
reply at once; the save is journaled, visible to ``recall_memory`` at once,
and committed and indexed in the background.
"""

from livekit import agents
from livekit.agents import Agent, AgentSession
from livekit.plugins import openai, silero

import mnemo
from mnemo.livekit import memory_tools

# One engine per worker process, shared by every call it handles. A
# postgres:// URL instead lets a fleet of workers share one memory.
MEMORY = mnemo.Memory("agent-memory.db")


async def entrypoint(ctx: agents.JobContext) -> None:
    await ctx.connect()
    caller = await ctx.wait_for_participant()
    agent = Agent(
        instructions=(
            "You are a friendly voice assistant. When the caller tells you something "
            "about themselves worth remembering, call store_memory. Before answering "
            "questions about them, call recall_memory."
        ),
        tools=memory_tools(MEMORY, namespace=caller.identity),
    )
    session = AgentSession(
        stt=openai.STT(), llm=openai.LLM(), tts=openai.TTS(), vad=silero.VAD.load()
    )
    await session.start(agent=agent, room=ctx.room)


if __name__ == "__main__":
    agents.cli.run_app(agents.WorkerOptions(entrypoint_fnc=entrypoint))
