"""Python threads saving, reading and waiting at once: no deadlock with the
GIL, and the GIL released while waiting."""

import threading
import time

import mnemo


def test_threads_saving_reading_and_waiting_at_once(open_memory):
    memory = open_memory(quiet_window_ms=10, max_wait_ms=50)
    errors = []
    per_thread = 1500
    writers = 6
    stop = threading.Event()

    def writer(n):
        try:
            last = None
            for i in range(per_thread):
                last = memory.save(f"t{n}", f"k{i}", f"thread {n} save {i} about singing")
                if i % 300 == 0:
                    last.wait_durable(timeout=30)
            last.wait_indexed(timeout=30)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader():
        try:
            while not stop.is_set():
                memory.search("singing", limit=10)
                memory.get("t0", "k0")
                memory.stats()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads + readers:
        t.start()
    deadline = time.monotonic() + 120
    for t in threads:
        t.join(timeout=max(0, deadline - time.monotonic()))
        assert not t.is_alive(), "a writer thread is stuck"
    stop.set()
    for t in readers:
        t.join(timeout=30)
        assert not t.is_alive(), "a reader thread is stuck"
    assert errors == []
    for n in range(writers):
        assert len(memory.list(f"t{n}")) == per_thread
    assert memory.stats().accepted == writers * per_thread
    memory.close()
    again = open_memory()
    assert sum(len(again.list(f"t{n}")) for n in range(writers)) == writers * per_thread


def test_the_gil_is_released_while_a_thread_waits(open_memory):
    memory = open_memory(quiet_window_ms=60_000, max_wait_ms=60_000)
    receipt = memory.save("c", "k", "v")
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(receipt.wait_indexed(timeout=30)))
    waiter.start()
    # Python code keeps running here while the other thread waits.
    spins = 0
    until = time.monotonic() + 0.3
    while time.monotonic() < until:
        spins += 1
    assert spins > 10_000
    assert waiter.is_alive() and outcome == []
    memory.flush()
    waiter.join(timeout=30)
    assert outcome == ["inserted"]


def test_close_while_other_threads_save(open_memory):
    memory = open_memory(quiet_window_ms=10)
    accepted = []
    refused = []

    def writer(n):
        for i in range(100_000):
            try:
                accepted.append(memory.save("c", f"{n}-{i}", "v"))
            except mnemo.Overloaded:
                time.sleep(0.001)
            except mnemo.Closed:
                refused.append(i)
                return

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    memory.close()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert len(refused) == 3
    assert all(r.status == "indexed" for r in accepted)
    assert len(open_memory().list("c")) == len(accepted)
