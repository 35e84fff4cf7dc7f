"""The synchronous API: save, read at once, durable, reopen; languages;
input errors that write nothing; Overloaded; forget; listing; config;
closing (explicitly, by ``with``, by garbage collection, at exit)."""

import asyncio
import datetime
import gc
import json

import pytest

import mnemo

# «I like singing and writing» in Urdu, Hindi, Chinese and English, with a
# word of each to search for.
LANGUAGES = {
    "urdu": ("مجھے گانا اور لکھنا پسند ہے", "گانا"),
    "hindi": ("मुझे गाना और लिखना पसंद है", "लिखना"),
    "chinese": ("我喜欢唱歌和写作", "唱歌"),
    "english": ("I like singing and writing", "singing"),
}


def test_save_is_readable_at_once_then_durable_and_there_after_reopening(open_memory, db_path):
    memory = open_memory(quiet_window_ms=300, max_wait_ms=2000)
    receipt = memory.save("hobbies", "music", "likes singing", metadata={"source": "voice"})
    assert isinstance(receipt, mnemo.Receipt)
    assert receipt.seq >= 1
    assert receipt.status == "accepted"
    assert receipt.outcome is None

    # Before any commit: get and search see it.
    record = memory.get("hobbies", "music")
    assert record is not None
    assert record.value == "likes singing"
    assert record.metadata == {"source": "voice"}
    assert record.version is None
    assert record.namespace == "u1" and record.category == "hobbies" and record.key == "music"
    hits = memory.search("singing")
    assert [h.key for h in hits] == ["music"]
    assert hits[0].fresh and hits[0].score > 0
    assert hits[0].record == record

    outcome = asyncio.run(_durable(receipt))
    assert outcome == "inserted"
    assert outcome.kind == "inserted" and outcome.version == 1
    assert receipt.status in ("durable", "indexed")
    assert receipt.wait_indexed(timeout=10) == "inserted"
    assert receipt.status == "indexed"
    memory.close()
    assert memory.closed

    again = open_memory()
    record = again.get("hobbies", "music")
    assert record.value == "likes singing"
    assert record.version == 1
    assert record.metadata == {"source": "voice"}
    assert isinstance(record.updated_at, datetime.datetime)
    assert record.updated_at.tzinfo is not None
    age = datetime.datetime.now(datetime.timezone.utc) - record.updated_at
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=5)
    assert record.updated_at_ms == round(record.updated_at.timestamp() * 1000)
    hits = again.search("singing")
    assert [h.key for h in hits] == ["music"]
    assert not hits[0].fresh
    assert again.stats().replayed == 0


async def _durable(receipt):
    return await receipt.durable()


def test_urdu_hindi_chinese_english_are_saved_found_and_kept(open_memory):
    memory = open_memory()
    receipts = [memory.save("likes", lang, text) for lang, (text, _) in LANGUAGES.items()]
    for lang, (text, word) in LANGUAGES.items():
        assert memory.get("likes", lang).value == text
        assert lang in [h.key for h in memory.search(word)], (lang, "fresh")
    for r in receipts:
        assert r.wait_indexed(timeout=10) == "inserted"
    for lang, (text, word) in LANGUAGES.items():
        hits = memory.search(word)
        assert hits and hits[0].key == lang and not hits[0].fresh, (lang, hits)
    memory.close()

    again = open_memory()
    for lang, (text, word) in LANGUAGES.items():
        assert again.get("likes", lang).value == text
        assert again.search(word)[0].value == text
    # Metadata in any script round-trips too.
    r = again.save("likes", "urdu-meta", "گانا", metadata={"زبان": "اردو", "लिपि": ["देवनागरी"], "中": 1})
    r.wait_durable(timeout=10)
    assert again.get("likes", "urdu-meta").metadata == {"زبان": "اردو", "लिपि": ["देवनागरी"], "中": 1}


BAD_SAVES = [
    # (args, kwargs, field)
    (("", "k", "v"), {}, "category"),
    (("   ", "k", "v"), {}, "category"),
    (("c", "", "v"), {}, "key"),
    (("c", "k\0", "v"), {}, "key"),
    (("c", "x" * 257, "v"), {}, "key"),
    (("c", "k", ""), {}, "value"),
    (("c", "k", "  \n"), {}, "value"),
    (("c", "k", "a\0b"), {}, "value"),
    (("c", "k", "v" * (64 * 1024 + 1)), {}, "value"),
    (("c", "k", "v"), {"namespace": ""}, "namespace"),
    (("c", "k", "v"), {"metadata": "[1, 2]"}, "metadata"),
    (("c", "k", "v"), {"metadata": "{not json"}, "metadata"),
    (("c", "k", "v"), {"metadata": {"n": 2**64}}, "metadata"),
    (("c", "k", "v"), {"metadata": {"n": float("nan")}}, "metadata"),
    (("c", "k", "v"), {"metadata": {1: "int key"}}, "metadata"),
    (("c", "k", "v"), {"metadata": {"s": {1, 2}}}, "metadata"),
    (("c", "k", "v"), {"metadata": {"big": "x" * (17 * 1024)}}, "metadata"),
]


@pytest.mark.parametrize("args,kwargs,field", BAD_SAVES)
def test_bad_input_raises_invalid_input_naming_the_field_and_writes_nothing(
    open_memory, args, kwargs, field
):
    memory = open_memory()
    with pytest.raises(mnemo.InvalidInput) as caught:
        memory.save(*args, **kwargs)
    assert caught.value.field == field
    assert caught.value.reason
    assert field in str(caught.value)
    assert isinstance(caught.value, mnemo.MnemoError)
    assert isinstance(caught.value, ValueError)
    stats = memory.stats()
    assert stats.accepted == 0
    assert memory.list() == []
    memory.close()
    again = open_memory()
    assert again.namespaces() == []
    assert again.stats().replayed == 0


def test_wrong_types_raise_type_error_and_write_nothing(open_memory):
    memory = open_memory()
    with pytest.raises(TypeError):
        memory.save("c", "k", 42)
    with pytest.raises(TypeError):
        memory.save("c", "k", "v", metadata=[1, 2])
    with pytest.raises(TypeError):
        memory.save("c", "k", "v", unknown=1)
    assert memory.stats().accepted == 0


def test_a_call_without_namespace_and_no_default_names_namespace(db_path):
    with mnemo.Memory(db_path) as memory:
        assert memory.namespace is None
        for call in (
            lambda: memory.save("c", "k", "v"),
            lambda: memory.forget("c", "k"),
            lambda: memory.get("c", "k"),
            lambda: memory.list(),
            lambda: memory.search("v"),
        ):
            with pytest.raises(mnemo.InvalidInput) as caught:
                call()
            assert caught.value.field == "namespace"
        # An explicit namespace works without a default.
        memory.save("c", "k", "v", namespace="n1").wait_durable(timeout=10)
        assert memory.get("c", "k", namespace="n1").value == "v"
        assert memory.get("c", "k", namespace="n2") is None
        assert memory.namespaces() == ["n1"]


def test_bad_read_arguments_raise_invalid_input(open_memory):
    memory = open_memory()
    for call, field in (
        (lambda: memory.search("x", limit=0), "limit"),
        (lambda: memory.search("x", limit=-1), "limit"),
        (lambda: memory.search("x", limit=1001), "limit"),
        (lambda: memory.search("word " * 5000), "query"),
        (lambda: memory.get("", "k"), "category"),
        (lambda: memory.list_page(limit=0), "limit"),
        (lambda: memory.list_page(cursor="nope"), "cursor"),
    ):
        with pytest.raises(mnemo.InvalidInput) as caught:
            call()
        assert caught.value.field == field


def test_overloaded_when_the_pending_bound_is_full(open_memory):
    memory = open_memory(max_pending=4, max_batch=4, quiet_window_ms=60_000, max_wait_ms=60_000)
    accepted = []
    with pytest.raises(mnemo.Overloaded) as caught:
        for i in range(100_000):
            accepted.append((f"k{i}", memory.save("c", f"k{i}", f"value {i}")))
    err = caught.value
    assert isinstance(err, mnemo.MnemoError)
    assert err.pending >= 4 and err.pending_bytes > 0
    refused = f"k{len(accepted)}"
    assert memory.get("c", refused) is None
    assert memory.stats().rejected_overloaded >= 1
    memory.close()
    for _, r in accepted:
        assert r.status == "indexed"
    again = open_memory()
    assert {r.key for r in again.list()} == {k for k, _ in accepted}


def test_outcomes_of_forget_unchanged_updated_and_superseded(open_memory):
    memory = open_memory(quiet_window_ms=200)
    first = memory.save("c", "k", "one")
    second = memory.save("c", "k", "two")
    assert memory.get("c", "k").value == "two"
    out = first.wait_durable(timeout=10)
    assert out == "superseded" and out.superseded_by == second.seq
    assert second.wait_durable(timeout=10) == "inserted"
    same = memory.save("c", "k", "two")
    memory.flush()
    assert same.wait_durable(timeout=10).kind == "unchanged"
    changed = memory.save("c", "k", "three")
    memory.flush()
    out = changed.wait_durable(timeout=10)
    assert out == "updated" and out.version == 2

    gone = memory.forget("c", "k")
    assert memory.get("c", "k") is None
    assert memory.search("three") == []
    assert gone.wait_indexed(timeout=10) == "deleted"
    missing = memory.forget("c", "never-saved")
    assert missing.wait_durable(timeout=10) == "not_found"
    assert missing.outcome == "not_found" and missing.outcome.version is None
    memory.close()
    assert open_memory().get("c", "k") is None


def test_outcome_equality_and_hash(open_memory):
    memory = open_memory()
    a = memory.save("c", "a", "v").wait_durable(timeout=10)
    b = memory.save("c", "b", "v").wait_durable(timeout=10)
    assert a == b and not (a != b)
    assert a == "inserted" and a != "updated" and a != 1
    assert hash(a) == hash(b) == hash("inserted")
    assert "inserted" in {a}
    assert str(a) == "inserted"


def test_list_and_list_page(open_memory):
    memory = open_memory()
    for i in range(25):
        memory.save("a" if i % 2 else "b", f"k{i:02}", f"v{i}")
    everything = memory.list()
    assert len(everything) == 25
    assert [(r.category, r.key) for r in everything] == sorted((r.category, r.key) for r in everything)
    assert all(r.category == "a" for r in memory.list("a"))
    assert len(memory.list("a")) == 12
    pages, cursor = [], None
    while True:
        page = memory.list_page(limit=10, cursor=cursor)
        pages.append(len(page))
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == [10, 10, 5]
    assert [r.key for r in memory.list_page(category="b", limit=3)] == ["k00", "k02", "k04"]
    as_dict = everything[0].to_dict()
    assert set(as_dict) == {"namespace", "category", "key", "value", "metadata", "version", "updated_at"}


def test_config_keywords(db_path, tmp_path):
    with pytest.raises(TypeError, match="no_such_option"):
        mnemo.Memory(db_path, no_such_option=1)
    with pytest.raises(TypeError, match="max_batch"):
        mnemo.Memory(db_path, max_batch="ten")
    with pytest.raises(TypeError, match="journal"):
        mnemo.Memory(db_path, journal=1)
    with pytest.raises(ValueError, match="synchronous"):
        mnemo.Memory(db_path, synchronous="sometimes")
    with pytest.raises(ValueError, match="retrieval"):
        mnemo.Memory(db_path, retrieval="psychic")
    with pytest.raises(ValueError, match="quiet_window_ms"):
        mnemo.Memory(db_path, quiet_window_ms=-1)
    with pytest.raises(mnemo.InvalidConfig, match="max_wait"):
        mnemo.Memory(db_path, quiet_window_ms=500, max_wait_ms=10)
    with pytest.raises(mnemo.InvalidInput) as caught:
        mnemo.Memory(db_path, namespace=" ")
    assert caught.value.field == "namespace"
    journal = tmp_path / "journal-here"
    with mnemo.Memory(
        db_path,
        namespace="n",
        retrieval="hybrid",
        quiet_window_ms=5.5,
        max_wait_ms=50,
        max_batch=10,
        max_batch_bytes=1 << 20,
        max_pending=100,
        max_pending_bytes=1 << 24,
        max_value_bytes=1000,
        max_metadata_bytes=1000,
        max_key_part_bytes=64,
        synchronous="normal",
        busy_deadline_ms=5000,
        read_connections=2,
        journal=True,
        journal_sync="batch",
        journal_segment_bytes=1 << 20,
        journal_dir=journal,
    ) as memory:
        assert memory.path.endswith("memory.db")
        r = memory.save("c", "k", "tomatoes and plurals")
        assert journal.is_dir()
        with pytest.raises(mnemo.InvalidInput):
            memory.save("c", "k", "x" * 1001)
        assert r.wait_indexed(timeout=10) == "inserted"
        assert memory.search("tomato")[0].key == "k"  # hybrid finds the singular


def test_open_errors(tmp_path):
    not_a_db = tmp_path / "junk.db"
    not_a_db.write_bytes(b"this is not an sqlite database, not at all" * 100)
    with pytest.raises(mnemo.OpenError) as caught:
        mnemo.Memory(str(not_a_db))
    assert caught.value.reason
    assert isinstance(caught.value, mnemo.MnemoError)


def test_closing_with_and_close_and_afterwards(open_memory, db_path):
    with mnemo.Memory(db_path, namespace="u1", quiet_window_ms=60_000, max_wait_ms=60_000) as memory:
        receipt = memory.save("c", "k", "kept by close")
        assert receipt.status == "accepted"
    assert memory.closed
    # close() committed and indexed everything.
    assert receipt.status == "indexed"
    memory.close()  # idempotent
    for call in (
        lambda: memory.save("c", "k", "v"),
        lambda: memory.forget("c", "k"),
        lambda: memory.get("c", "k"),
        lambda: memory.search("v"),
        lambda: memory.stats(),
    ):
        with pytest.raises(mnemo.Closed):
            call()
    assert "closed" in repr(memory)
    assert open_memory().get("c", "k").value == "kept by close"


def test_a_memory_dropped_without_close_flushes(open_memory, db_path):
    memory = mnemo.Memory(db_path, namespace="u1", quiet_window_ms=60_000, max_wait_ms=60_000)
    receipt = memory.save("c", "k", "kept by the drop")
    del memory
    gc.collect()
    assert receipt.wait_durable(timeout=10) == "inserted"
    again = open_memory()
    assert again.get("c", "k").value == "kept by the drop"
    assert again.stats().replayed == 0


def test_interpreter_exit_closes_open_memories(db_path, run_python):
    code = """
import sys, mnemo
memory = mnemo.Memory(sys.argv[1], namespace="u1", quiet_window_ms=60_000, max_wait_ms=60_000)
r = memory.save("c", "k", "kept at exit")
keep = [memory, r]
print(r.status)
"""
    done = run_python(code, db_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "accepted"
    check = """
import sys, json, mnemo
with mnemo.Memory(sys.argv[1], namespace="u1") as memory:
    r = memory.get("c", "k")
    print(json.dumps([r.value, r.version, memory.stats().replayed]))
"""
    done = run_python(check, db_path)
    assert done.returncode == 0, done.stderr
    # Committed at exit (version 1), not replayed from the journal.
    assert json.loads(done.stdout) == ["kept at exit", 1, 0]


def test_stats(open_memory):
    memory = open_memory()
    receipts = [memory.save("c", f"k{i}", f"v{i}") for i in range(10)]
    for r in receipts:
        r.wait_indexed(timeout=10)
    stats = memory.stats()
    assert isinstance(stats, mnemo.Stats)
    assert stats.accepted == 10
    assert stats.committed == 10
    assert stats.pending == 0
    assert stats.batches >= 1
    assert stats.index_lag_changes == 0
    assert isinstance(stats.flush_ms, mnemo.Summary) and stats.flush_ms.count >= 1
    d = stats.to_dict()
    assert d["accepted"] == 10 and d["batch_size"]["count"] >= 1
    json.dumps(d)


def test_reprs(open_memory):
    memory = open_memory()
    assert repr(memory).startswith("<mnemo.Memory '")
    r = memory.save("c", "k", "v")
    assert repr(r) == f"<Receipt seq={r.seq} status='accepted'>"
    assert repr(r.wait_durable(timeout=10)) == "Outcome(kind='inserted', version=1)"
    assert "MemoryRecord(" in repr(memory.get("c", "k"))
    assert "SearchHit(" in repr(memory.search("v")[0])


def test_a_forked_child_that_exits_does_not_hang_or_close_the_parents_memory(db_path, run_python):
    code = """
import os, sys, time, mnemo
memory = mnemo.Memory(sys.argv[1], namespace="u1", quiet_window_ms=60_000, max_wait_ms=60_000)
r = memory.save("c", "k", "saved before the fork")
pid = os.fork()
if pid == 0:
    sys.exit(0)  # runs atexit in the child: the parent's engine is left alone
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.01)
else:
    os.kill(pid, 9)
    sys.exit("the forked child hung at exit")
assert os.waitstatus_to_exitcode(status) == 0
memory.save("c", "k2", "saved after the fork")
memory.close()
print(r.status)
"""
    done = run_python(code, db_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "indexed"
    with mnemo.Memory(db_path, namespace="u1") as memory:
        assert memory.get("c", "k").value == "saved before the fork"
        assert memory.get("c", "k2").value == "saved after the fork"
