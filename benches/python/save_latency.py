#!/usr/bin/env python3
"""How long a memory save blocks a Python agent: mnemo's ``Memory.save``
beside the usual designs, measured in one run of this script on one machine.

    python benches/python/save_latency.py            # 4-18 s here
    python benches/python/save_latency.py --quick    # ~1 s

Run it with the Python that has the ``mnemo`` package installed (``pip
install .`` at the repository root: a release build). Every part gets a
fresh SQLite database in a temporary folder (``--dir`` chooses where), and
every figure is one call timed with ``time.perf_counter_ns`` around it, the
timer's own cost included (the last row shows that cost). The parts, in
order:

1. **mnemo** ``Memory.save``: a fresh database, the default configuration, a
   warm-up of 10,000 calls, then 100,000 timed calls (2,000 and 10,000 with
   ``--quick``), distinct keys prepared beforehand. As in
   ``benches/save_latency.rs``, every 10,000 calls the script asks for a
   flush and waits until the chunk's last save is durable, outside the timed
   region, so the pending bound (100,000) never fills; the engine commits
   and indexes in the background while the next chunk is timed. Then the
   same call from a coroutine in a running asyncio loop, with one ``await
   asyncio.sleep(0)`` after each call (timed alone, and with that loop
   turn): a tenth as many calls, on another fresh database.
2. **awaited save**, the usual tool, modelled in Python: an ``async def``
   that runs a blocking function with ``asyncio.to_thread`` (the default
   executor, so the event loop is not blocked meanwhile) and awaits it. The
   function, on one ``sqlite3`` connection (WAL, ``synchronous=FULL``,
   autocommit mode with explicit transactions), upserts the row in its own
   ``BEGIN IMMEDIATE`` … ``COMMIT`` (the engine's ``memories`` table and
   upsert statement), then indexes it in a second transaction: an FTS5
   delete and insert of the row, as ``mnemo::baseline::AwaitedStore`` does
   in Rust. The FTS5 table keeps its own copy of the text: the engine's
   contentless-delete table needs SQLite 3.43, and the ``sqlite3`` module may
   be linked with an older one. Each save is awaited before the next; 50
   warm-up, then 1,000 timed (10 and 100 with ``--quick``).
3. **fire-and-forget**: ``asyncio.create_task(awaited_save(...))``, a
   reference kept in a set as asyncio's documentation asks, timing that call
   alone, and that call with the ``await asyncio.sleep(0)`` after it (the
   loop turn in which the task starts and hands its work to the executor).
   The saves run behind, one at a time on the connection, while the next
   calls are timed; after the last call the script awaits them all and
   prints how long that took. As many saves as the awaited part.
4. **MCP round trip**: ``mnemo --db … --namespace bench mcp`` (the release
   binary, ``target/release/mnemo`` unless ``--mnemo`` says otherwise) as a
   child process over pipes, spoken to with newline-delimited JSON-RPC:
   ``initialize``, ``notifications/initialized``, 100 warm-up calls, then
   10,000 timed ``tools/call`` of ``store_memory`` (1,000 with ``--quick``),
   each from writing the request line until its answer line has been read,
   and each answered before the next is sent. Closing stdin ends the server,
   which commits everything and must exit 0 with every row in the database.

Prints p50, p90, p99, p99.9 and max of every part, issue 13's target for
``save`` from Python (p50 ≤ 3 µs, p99 ≤ 15 µs) and whether it was met, and
the load average at the start and the end. The awaited and fire-and-forget
saves take most of the time (two fsyncs each, 2,100 in all: 1-20 s,
depending on the disk and the load). ``--json`` also prints the figures as one JSON object, with
the load average before and after each part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set

try:
    import mnemo
except ImportError:  # pragma: no cover - a usage error
    sys.exit(
        "save_latency.py needs the mnemo package: run it with the Python where "
        "`pip install .` (at the repository root) installed it"
    )

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "bench"
CATEGORY = "facts"

# Issue 13's target for `Memory.save` called from Python.
TARGET_P50_NS = 3_000
TARGET_P99_NS = 15_000

perf_ns = time.perf_counter_ns


def key_of(i: int) -> str:
    return f"key-{i}"


def value_of(i: int) -> str:
    return f"value number {i}: likes singing and writing"


# --- figures ----------------------------------------------------------------


def percentile(sorted_ns: Sequence[int], q: float) -> int:
    """The value at rank floor((n - 1) * q), as benches/save_latency.rs
    takes it."""
    return sorted_ns[int((len(sorted_ns) - 1) * q)]


class Part:
    """One row of the table: the timed calls of one design."""

    def __init__(self, name: str, how: str, samples_ns: List[int], note: str = ""):
        self.name = name
        self.how = how
        self.samples = sorted(samples_ns)
        self.note = note
        self.load_before: Sequence[float] = ()
        self.load_after: Sequence[float] = ()
        self.extra: Dict[str, Any] = {}

    def at(self, q: float) -> int:
        return percentile(self.samples, q)

    def figures(self) -> Dict[str, Any]:
        s = self.samples
        return {
            "calls": len(s),
            "p50_ns": self.at(0.5),
            "p90_ns": self.at(0.9),
            "p99_ns": self.at(0.99),
            "p999_ns": self.at(0.999),
            "max_ns": s[-1],
            "mean_ns": round(sum(s) / len(s)),
            "calls_over_1ms": sum(1 for x in s if x >= 1_000_000),
            "how": self.how,
            "load_before": list(self.load_before),
            "load_after": list(self.load_after),
            **self.extra,
        }


def fmt(ns: float) -> str:
    """A duration in the unit that suits it."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 100_000:
        return f"{ns / 1e3:.2f} µs"
    if ns < 1_000_000:
        return f"{ns / 1e3:.0f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def loadavg() -> Sequence[float]:
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover - not on Linux or macOS
        return ()


def fmt_load(load: Sequence[float]) -> str:
    return " ".join(f"{x:.2f}" for x in load) if load else "?"


def say(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


# --- 1. mnemo ------------------------------------------------------------------


def bench_mnemo_save(folder: Path, warmup: int, calls: int, chunk: int = 10_000) -> List[Part]:
    """``Memory.save`` with the default configuration on a fresh database;
    a flush waited for every ``chunk`` calls, outside the timed region."""
    memory = mnemo.Memory(str(folder / "mnemo.db"), namespace=NAMESPACE)
    total = warmup + calls
    keys = [key_of(i) for i in range(total)]
    values = [value_of(i) for i in range(total)]
    lat: List[int] = []
    try:
        save = memory.save
        append = lat.append
        for start in range(0, total, chunk):
            receipt = None
            for i in range(start, min(start + chunk, total)):
                t0 = perf_ns()
                receipt = save(CATEGORY, keys[i], values[i])
                t1 = perf_ns()
                append(t1 - t0)
            memory.flush()
            assert receipt is not None
            receipt.wait_durable(timeout=120)
        stats = memory.stats()
        assert stats.accepted == total, stats.accepted
    finally:
        memory.close()
    part = Part(
        "mnemo Memory.save",
        f"default configuration, fresh database; {warmup:,} warm-up calls, then {calls:,} timed "
        f"(a flush waited for every {chunk:,} calls, outside the timing)",
        lat[warmup:],
    )
    part.extra["batches"] = stats.batches
    return [part]


def bench_mnemo_save_in_loop(folder: Path, warmup: int, calls: int, chunk: int = 10_000) -> List[Part]:
    """The same call from a coroutine in a running asyncio loop, the loop
    run once after each call (``await asyncio.sleep(0)``): the call alone,
    and the call with that loop turn."""
    memory = mnemo.Memory(str(folder / "mnemo-asyncio.db"), namespace=NAMESPACE)
    total = warmup + calls
    keys = [key_of(i) for i in range(total)]
    values = [value_of(i) for i in range(total)]
    lat: List[int] = []
    turn: List[int] = []

    async def main() -> None:
        save = memory.save
        for start in range(0, total, chunk):
            receipt = None
            for i in range(start, min(start + chunk, total)):
                t0 = perf_ns()
                receipt = save(CATEGORY, keys[i], values[i])
                t1 = perf_ns()
                await asyncio.sleep(0)
                t2 = perf_ns()
                lat.append(t1 - t0)
                turn.append(t2 - t0)
            memory.flush()
            assert receipt is not None
            await asyncio.wait_for(receipt.durable(), timeout=120)
        await memory.aclose()

    asyncio.run(main())
    how = f"{warmup:,} warm-up, {calls:,} timed, one `await asyncio.sleep(0)` after each call"
    return [
        Part("mnemo Memory.save in a coroutine", f"the same call from a coroutine; {how}", lat[warmup:]),
        Part("  + the loop turn after it", f"the call and the `await asyncio.sleep(0)` after it; {how}", turn[warmup:]),
    ]


# --- 2. and 3. the usual designs -------------------------------------------------

# The engine's `memories` table (crates/mnemo/src/store/sqlite/schema.rs) and
# an FTS5 table with the engine's columns and tokenizer.
SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    id          INTEGER PRIMARY KEY,
    namespace   TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    metadata    TEXT,
    version     INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    change_seq  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    hlc         INTEGER NOT NULL DEFAULT 0,
    UNIQUE (namespace, category, key)
);
CREATE INDEX IF NOT EXISTS memories_by_change ON memories (change_seq);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5 (
    ns, key, category, value, tokenize = 'ascii'
);
"""

# The engine's upsert (crates/mnemo/src/store/sqlite/write.rs), returning
# the row id for the index step.
UPSERT = """
INSERT INTO memories (namespace, category, key, value, metadata, version, seq, change_seq,
                      created_at, updated_at, deleted, hlc)
VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?8, 0, ?9)
ON CONFLICT (namespace, category, key) DO UPDATE SET
    value = excluded.value,
    metadata = excluded.metadata,
    version = memories.version + 1,
    seq = excluded.seq,
    change_seq = excluded.change_seq,
    updated_at = excluded.updated_at,
    created_at = CASE WHEN memories.deleted THEN excluded.created_at ELSE memories.created_at END,
    deleted = 0,
    hlc = excluded.hlc
WHERE excluded.hlc >= memories.hlc
  AND (memories.deleted = 1
       OR memories.value IS NOT excluded.value
       OR memories.metadata IS NOT excluded.metadata)
RETURNING id, version
"""


class AwaitedStore:
    """The usual memory tool: ``await store.save(...)`` returns once the row
    is committed (its own transaction, ``synchronous=FULL``) and then
    indexed (a second transaction: FTS5 delete + insert)."""

    def __init__(self, path: Path):
        # Autocommit mode: the transactions below are explicit. Used from
        # the executor's threads, one at a time (the lock).
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA busy_timeout = 30000")
        self.conn.executescript(SCHEMA)
        self.lock = threading.Lock()
        self.seq = 0

    def write_and_index(self, namespace: str, category: str, key: str, value: str) -> str:
        """Blocks until the row is committed and then indexed."""
        with self.lock:
            c = self.conn
            self.seq += 1
            now_ms = time.time_ns() // 1_000_000
            c.execute("BEGIN IMMEDIATE")
            try:
                rows = c.execute(
                    UPSERT,
                    (namespace, category, key, value, None, self.seq, self.seq, now_ms, (now_ms << 16) + self.seq),
                ).fetchall()
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            if not rows:
                return "unchanged"
            row_id, version = rows[0]
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute("DELETE FROM memories_fts WHERE rowid = ?", (row_id,))
                c.execute(
                    "INSERT INTO memories_fts (rowid, ns, key, category, value) VALUES (?, ?, ?, ?, ?)",
                    (row_id, namespace, key, category, value),
                )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return "inserted" if version == 1 else "updated"

    async def save(self, namespace: str, category: str, key: str, value: str) -> str:
        """The tool's save: awaits the blocking write in a worker thread."""
        return await asyncio.to_thread(self.write_and_index, namespace, category, key, value)

    def count(self) -> int:
        with self.lock:
            (n,) = self.conn.execute("SELECT count(*) FROM memories_fts").fetchone()
            return int(n)

    def close(self) -> None:
        self.conn.close()


def bench_awaited(folder: Path, warmup: int, calls: int) -> List[Part]:
    store = AwaitedStore(folder / "awaited.db")
    total = warmup + calls
    lat: List[int] = []

    async def main() -> None:
        for i in range(total):
            key, value = key_of(i), value_of(i)
            t0 = perf_ns()
            outcome = await store.save(NAMESPACE, CATEGORY, key, value)
            t1 = perf_ns()
            lat.append(t1 - t0)
            assert outcome == "inserted", outcome

    try:
        asyncio.run(main())
        assert store.count() == total
    finally:
        store.close()
    return [
        Part(
            "awaited save (the usual tool)",
            f"`await asyncio.to_thread(...)` of an upsert in its own transaction, then an FTS5 delete + "
            f"insert in a second; WAL, synchronous=FULL; each awaited before the next; {warmup} warm-up, "
            f"{calls:,} timed",
            lat[warmup:],
        )
    ]


def bench_fire_and_forget(folder: Path, warmup: int, calls: int) -> List[Part]:
    store = AwaitedStore(folder / "fire-and-forget.db")
    total = warmup + calls
    lat: List[int] = []
    turn: List[int] = []
    backlog: List[int] = []
    drain: List[int] = []

    async def main() -> None:
        running: Set[asyncio.Task[str]] = set()
        for i in range(total):
            key, value = key_of(i), value_of(i)
            t0 = perf_ns()
            task = asyncio.create_task(store.save(NAMESPACE, CATEGORY, key, value))
            t1 = perf_ns()
            running.add(task)
            task.add_done_callback(running.discard)
            # The loop turn that starts the task: it runs up to its first
            # await, where `asyncio.to_thread` hands the work to the executor.
            await asyncio.sleep(0)
            t2 = perf_ns()
            lat.append(t1 - t0)
            turn.append(t2 - t0)
            if i == warmup - 1:
                # The timed calls start with the warm-up's saves done.
                await asyncio.gather(*running)
        backlog.append(len(running))
        t0 = perf_ns()
        await asyncio.gather(*running)
        drain.append(perf_ns() - t0)

    try:
        asyncio.run(main())
        assert store.count() == total
    finally:
        store.close()
    how = (
        f"{warmup} warm-up, {calls:,} timed, one `await asyncio.sleep(0)` after each call; the saves "
        f"run behind in the executor's threads"
    )
    call = Part(
        "fire-and-forget (create_task)",
        f"`asyncio.create_task(awaited_save(...))`, that call alone; {how}",
        lat[warmup:],
        note=f"{backlog[0]:,} saves were still running after the last call; {fmt(drain[0])} until all were done",
    )
    call.extra["backlog_after_last_call"] = backlog[0]
    call.extra["drain_ns"] = drain[0]
    return [
        call,
        Part(
            "  + the loop turn that starts it",
            f"the call and the `await asyncio.sleep(0)` after it, in which the task starts and hands its "
            f"work to the executor; {how}",
            turn[warmup:],
        ),
    ]


# --- 4. the MCP round trip -------------------------------------------------------


class Mcp:
    """``mnemo mcp`` as a child process, spoken to with JSON-RPC lines."""

    def __init__(self, binary: Path, db: Path):
        self.proc = subprocess.Popen(
            [str(binary), "--db", str(db), "--namespace", NAMESPACE, "mcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the server's logs (errors only, by default) go to ours
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin
        self.stdout = self.proc.stdout
        self.last_id = 0

    def send(self, message: Dict[str, Any]) -> None:
        self.stdin.write(json.dumps(message, ensure_ascii=False).encode() + b"\n")
        self.stdin.flush()

    def read(self) -> Dict[str, Any]:
        line = self.stdout.readline()
        if not line:
            raise RuntimeError(f"mnemo mcp closed its stdout (exit status {self.proc.poll()})")
        answer: Dict[str, Any] = json.loads(line)
        return answer

    def initialize(self) -> None:
        self.last_id += 1
        self.send(
            {
                "jsonrpc": "2.0",
                "id": self.last_id,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2024-11-05",
                    "capabilities": {},
                    "clientInfo": {"name": "save_latency.py", "version": "1"},
                },
            }
        )
        answer = self.read()
        if answer.get("id") != self.last_id or "result" not in answer:
            raise RuntimeError(f"initialize failed: {answer}")
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def store_timed(self, key: str, value: str) -> int:
        """One ``store_memory`` call; returns the time from writing the
        request line until its answer line has been read."""
        self.last_id += 1
        want = self.last_id
        line = (
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": want,
                    "method": "tools/call",
                    "params": {
                        "name": "store_memory",
                        "arguments": {"category": CATEGORY, "key": key, "value": value},
                    },
                },
                ensure_ascii=False,
            )
            + "\n"
        ).encode()
        write, flush, readline = self.stdin.write, self.stdin.flush, self.stdout.readline
        t0 = perf_ns()
        write(line)
        flush()
        answer = readline()
        t1 = perf_ns()
        if not answer:
            raise RuntimeError(f"mnemo mcp closed its stdout (exit status {self.proc.poll()})")
        reply = json.loads(answer)
        result = reply.get("result") or {}
        if reply.get("id") != want or result.get("isError") is not False:
            raise RuntimeError(f"store_memory failed: {reply}")
        if json.loads(result["content"][0]["text"]).get("status") != "accepted":
            raise RuntimeError(f"store_memory: {reply}")
        return t1 - t0

    def close(self) -> int:
        self.stdin.close()
        status = self.proc.wait(timeout=120)
        self.stdout.close()
        return status


def bench_mcp(folder: Path, binary: Path, warmup: int, calls: int) -> List[Part]:
    db = folder / "mcp.db"
    server = Mcp(binary, db)
    lat: List[int] = []
    try:
        server.initialize()
        for i in range(warmup + calls):
            lat.append(server.store_timed(key_of(i), value_of(i)))
    finally:
        status = server.close()
    if status != 0:
        raise RuntimeError(f"mnemo mcp exited with status {status}")
    conn = sqlite3.connect(str(db))
    try:
        (rows,) = conn.execute("SELECT count(*) FROM memories").fetchone()
    finally:
        conn.close()
    if rows != warmup + calls:
        raise RuntimeError(f"mnemo mcp committed {rows} rows of {warmup + calls}")
    return [
        Part(
            "MCP store_memory round trip",
            f"`mnemo mcp` ({binary}) over stdio, JSON-RPC lines, each call answered before the next; "
            f"{warmup} warm-up, {calls:,} timed",
            lat[warmup:],
        )
    ]


def bench_timer(calls: int) -> List[Part]:
    """Two ``perf_counter_ns`` calls back to back: the cost inside every
    figure above."""
    lat = []
    for _ in range(calls):
        t0 = perf_ns()
        t1 = perf_ns()
        lat.append(t1 - t0)
    return [Part("timer alone (perf_counter_ns pair)", "in every figure above", lat)]


# --- the run -----------------------------------------------------------------------


def run_part(label: str, fn: Any, *args: Any) -> List[Part]:
    say(f"... {label}")
    before = loadavg()
    started = time.monotonic()
    parts: List[Part] = fn(*args)
    after = loadavg()
    wall = round(time.monotonic() - started, 2)
    for part in parts:
        part.load_before = before
        part.load_after = after
        part.extra["wall_s"] = wall
    say(f"    {wall:.1f} s")
    return parts


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="fewer calls: about a second")
    ap.add_argument("--calls", type=int, help="timed Memory.save calls (default 100,000; --quick 10,000)")
    ap.add_argument(
        "--awaited", type=int, help="timed awaited and fire-and-forget saves each (default 1,000; --quick 100)"
    )
    ap.add_argument("--mcp-calls", type=int, help="timed store_memory round trips (default 10,000; --quick 1,000)")
    ap.add_argument(
        "--mnemo",
        type=Path,
        default=ROOT / "target" / "release" / "mnemo",
        help="the mnemo binary for the MCP part (default: target/release/mnemo)",
    )
    ap.add_argument("--no-mcp", action="store_true", help="skip the MCP round trip")
    ap.add_argument("--dir", type=Path, help="where the scratch databases go (default: the system temp folder)")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = ap.parse_args(argv)

    calls = args.calls or (10_000 if args.quick else 100_000)
    save_warmup = 2_000 if args.quick else 10_000
    loop_calls = max(calls // 10, 1_000)
    awaited = args.awaited or (100 if args.quick else 1_000)
    awaited_warmup = 10 if args.quick else 50
    mcp_calls = args.mcp_calls or (1_000 if args.quick else 10_000)
    mcp_warmup = 100
    if not args.no_mcp and not args.mnemo.exists():
        say(
            f"no mnemo binary at {args.mnemo}: build it with `cargo build --release` "
            "(or pass --mnemo PATH, or --no-mcp to skip that part)"
        )
        return 2

    machine = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "mnemo": mnemo.__version__,
        "sqlite3_module_sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "quick": args.quick,
        "load_at_start": list(loadavg()),
    }
    print(
        f"mnemo save latency from Python — {machine['python']}, mnemo {machine['mnemo']}, "
        f"sqlite3 module's SQLite {machine['sqlite3_module_sqlite']}, {machine['cpus']} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="mnemo-pybench-", dir=args.dir) as tmp:
        folder = Path(tmp)
        machine["scratch"] = str(folder)
        print(f"scratch databases in {folder}; load average at start {fmt_load(loadavg())}")
        started = time.monotonic()
        parts = run_part("mnemo Memory.save", bench_mnemo_save, folder, save_warmup, calls)
        parts += run_part(
            "mnemo Memory.save in a coroutine", bench_mnemo_save_in_loop, folder, save_warmup // 10, loop_calls
        )
        parts += run_part("awaited save", bench_awaited, folder, awaited_warmup, awaited)
        parts += run_part("fire-and-forget", bench_fire_and_forget, folder, awaited_warmup, awaited)
        if not args.no_mcp:
            parts += run_part("MCP round trip", bench_mcp, folder, args.mnemo.resolve(), mcp_warmup, mcp_calls)
        parts += run_part("timer", bench_timer, 100_000)
        machine["wall_s"] = round(time.monotonic() - started, 1)
        machine["load_at_end"] = list(loadavg())

    print()
    width = max(len(p.name) for p in parts)
    cols = ["calls", "p50", "p90", "p99", "p99.9", "max"]
    print(f"{'':{width}}" + "".join(f"{c:>11}" for c in cols))
    for p in parts:
        cells = [f"{len(p.samples):,}"] + [fmt(p.at(q)) for q in (0.5, 0.9, 0.99, 0.999)] + [fmt(p.samples[-1])]
        print(f"{p.name:{width}}" + "".join(f"{c:>11}" for c in cells))
    print()
    for p in parts:
        if p.name.startswith("  "):
            continue
        print(f"- {p.name}: {p.how}")
        if p.note:
            print(f"  {p.note}")
    print()
    save = parts[0]
    p50, p99 = save.at(0.5), save.at(0.99)
    met = p50 <= TARGET_P50_NS and p99 <= TARGET_P99_NS
    over = sum(1 for x in save.samples if x >= 1_000_000)
    print(
        f"Memory.save from Python, target p50 ≤ {fmt(TARGET_P50_NS)}, p99 ≤ {fmt(TARGET_P99_NS)}: "
        f"p50 {fmt(p50)}, p99 {fmt(p99)}: {'met' if met else 'NOT met'} "
        f"({over} of {len(save.samples):,} calls took 1 ms or more)"
    )
    for p in parts[1:]:
        if p.name.startswith("  ") or p.name.startswith("timer"):
            continue
        print(f"{p.name}: {p.at(0.5) / p50:,.1f}× Memory.save at p50, {p.at(0.99) / p99:,.1f}× at p99")
    print(f"whole run {machine['wall_s']} s; load average at end {fmt_load(machine['load_at_end'])}")
    if args.json:
        print()
        print(json.dumps({"machine": machine, "parts": {p.name.strip(): p.figures() for p in parts}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
