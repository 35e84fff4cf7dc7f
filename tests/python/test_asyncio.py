"""Awaiting receipts: on any running loop, a thousand at once without a
thread each, after close(), cancelled, and the async context manager."""

import asyncio
import os
import threading

import pytest

import mnemo


def os_threads():
    """Threads of this process, Python's and native ones."""
    return len(os.listdir("/proc/self/task"))


def test_a_thousand_saves_from_coroutines_then_every_receipt_awaited(open_memory):
    memory = open_memory(quiet_window_ms=50)

    async def agent_turn(i):
        await asyncio.sleep(0)
        return memory.save("turns", f"k{i}", f"turn {i}: likes singing")

    async def main():
        receipts = await asyncio.gather(*(agent_turn(i) for i in range(1000)))
        assert all(r.status == "accepted" or r.status == "durable" for r in receipts)
        before = os_threads()
        # 2,000 pending awaits at once: tasks on one waiter, not threads.
        durable, indexed = await asyncio.wait_for(
            asyncio.gather(
                asyncio.gather(*(r.durable() for r in receipts)),
                asyncio.gather(*(r.indexed() for r in receipts)),
            ),
            timeout=60,
        )
        assert os_threads() <= before + 4
        return receipts, durable, indexed

    receipts, durable, indexed = asyncio.run(main())
    assert [o.kind for o in durable] == ["inserted"] * 1000
    assert [o.kind for o in indexed] == ["inserted"] * 1000
    assert all(r.status == "indexed" for r in receipts)
    assert len({r.seq for r in receipts}) == 1000
    assert len(memory.list("turns")) == 1000
    assert len(memory.search("singing", limit=1000)) == 1000


def test_receipts_awaited_after_close_resolve(open_memory):
    memory = open_memory(quiet_window_ms=60_000, max_wait_ms=60_000)
    receipts = [memory.save("c", f"k{i}", f"v{i}") for i in range(50)]
    gone = memory.forget("c", "k0")
    memory.close()

    async def main():
        return await asyncio.wait_for(
            asyncio.gather(*(r.durable() for r in receipts), *(r.indexed() for r in receipts), gone.indexed()),
            timeout=10,
        )

    outcomes = asyncio.run(main())
    assert outcomes[0] == "superseded" and outcomes[0].superseded_by == gone.seq
    assert all(o == "inserted" for o in outcomes[1:50])
    assert outcomes[-1] == "not_found"  # k0 was never committed: the forget found nothing


def test_receipts_pending_while_the_memory_closes_resolve(open_memory):
    memory = open_memory(quiet_window_ms=60_000, max_wait_ms=60_000)

    async def main():
        receipts = [memory.save("c", f"k{i}", f"v{i}") for i in range(100)]
        waits = asyncio.gather(*(r.indexed() for r in receipts))
        await asyncio.sleep(0.05)
        assert not waits.done()
        await memory.aclose()
        return await asyncio.wait_for(waits, timeout=10)

    assert [o.kind for o in asyncio.run(main())] == ["inserted"] * 100
    assert memory.closed


def test_receipts_of_a_memory_dropped_without_close_resolve(db_path):
    memory = mnemo.Memory(db_path, namespace="u1", quiet_window_ms=60_000, max_wait_ms=60_000)
    receipt = memory.save("c", "k", "v")
    del memory

    async def main():
        return await asyncio.wait_for(receipt.durable(), timeout=10)

    assert asyncio.run(main()) == "inserted"


def test_a_cancelled_await_stops_only_the_wait(open_memory):
    memory = open_memory(quiet_window_ms=60_000, max_wait_ms=60_000)
    receipt = memory.save("c", "k", "v")

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(receipt.durable(), timeout=0.05)
        task = asyncio.ensure_future(receipt.indexed())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert receipt.status == "accepted"
        memory.flush()
        return await asyncio.wait_for(receipt.durable(), timeout=10)

    assert asyncio.run(main()) == "inserted"


def test_awaits_work_on_several_loops_and_threads(open_memory):
    memory = open_memory(quiet_window_ms=30)
    results = {}

    def in_thread(name):
        async def main():
            receipts = [memory.save(name, f"k{i}", f"v{i}") for i in range(20)]
            return [o.kind for o in await asyncio.gather(*(r.indexed() for r in receipts))]

        results[name] = asyncio.run(main())

    threads = [threading.Thread(target=in_thread, args=(f"loop{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    in_thread("main")
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert results == {name: ["inserted"] * 20 for name in ["main", "loop0", "loop1", "loop2", "loop3"]}


def test_an_already_settled_receipt_resolves_at_once(open_memory):
    memory = open_memory()
    receipt = memory.save("c", "k", "v")
    receipt.wait_indexed(timeout=10)

    async def main():
        fut = receipt.durable()
        assert fut.done()
        return await fut, await receipt.indexed()

    assert asyncio.run(main()) == ("inserted", "inserted")


def test_awaiting_needs_a_running_loop(open_memory):
    memory = open_memory()
    receipt = memory.save("c", "k", "v")
    with pytest.raises(RuntimeError):
        receipt.durable()


def test_async_with(db_path):
    async def main():
        async with mnemo.Memory(db_path, namespace="u1", quiet_window_ms=60_000, max_wait_ms=60_000) as memory:
            receipt = memory.save("c", "k", "saved inside async with")
        assert memory.closed
        assert receipt.status == "indexed"
        return await receipt.indexed()

    assert asyncio.run(main()) == "inserted"
    with mnemo.Memory(db_path, namespace="u1") as memory:
        assert memory.get("c", "k").value == "saved inside async with"


def test_blocking_waits_time_out_and_then_succeed(open_memory):
    memory = open_memory(quiet_window_ms=60_000, max_wait_ms=60_000)
    receipt = memory.save("c", "k", "v")
    with pytest.raises(TimeoutError):
        receipt.wait_durable(timeout=0.05)
    with pytest.raises(TimeoutError):
        receipt.wait_indexed(timeout=0)
    with pytest.raises(ValueError):
        receipt.wait_durable(timeout=-1)
    memory.flush()
    assert receipt.wait_durable(timeout=10) == "inserted"
    assert receipt.wait_indexed() == "inserted"
