"""The same API on a PostgreSQL database given as a ``postgres://`` URL:
saves readable at once, durable, found after reopening, and shared by two
workers (each with its own crash journal). Needs PostgreSQL's server
binaries (``apt-get install postgresql-15``); skipped without them."""

import asyncio

import mnemo

from test_api import LANGUAGES


def test_postgres_save_read_durable_reopen(pg_server, tmp_path):
    url = pg_server()
    journal = tmp_path / "journal"
    with mnemo.Memory(url, namespace="u1", quiet_window_ms=20, journal_dir=journal) as memory:
        assert memory.path.startswith("postgres://")
        receipts = [memory.save("likes", lang, text) for lang, (text, _) in LANGUAGES.items()]
        for lang, (text, word) in LANGUAGES.items():
            assert memory.get("likes", lang).value == text
            assert lang in [h.key for h in memory.search(word)]

        async def wait_all():
            return await asyncio.gather(*(r.indexed() for r in receipts))

        assert [o.kind for o in asyncio.run(wait_all())] == ["inserted"] * len(LANGUAGES)
        gone = memory.forget("likes", "english")
        assert gone.wait_durable(timeout=30) == "deleted"

    with mnemo.Memory(url, namespace="u1", journal_dir=journal) as again:
        assert again.get("likes", "english") is None
        for lang, (text, word) in LANGUAGES.items():
            if lang == "english":
                continue
            record = again.get("likes", lang)
            assert record.value == text and record.version == 1
            hits = again.search(word)
            assert hits and hits[0].key == lang and not hits[0].fresh


def test_two_workers_share_a_postgres_database(pg_server, tmp_path):
    url = pg_server()
    a = mnemo.Memory(url, namespace="caller", quiet_window_ms=20, journal_dir=tmp_path / "a")
    b = mnemo.Memory(url, namespace="caller", quiet_window_ms=20, journal_dir=tmp_path / "b")
    try:
        assert a.save("facts", "boss", "Manager is Priya Raman").wait_indexed(timeout=30) == "inserted"
        record = b.get("facts", "boss")
        assert record is not None and record.value == "Manager is Priya Raman"
        assert b.search("Priya")[0].key == "boss"
        assert b.save("facts", "boss", "Manager is Daniel").wait_durable(timeout=30) == "updated"
        assert a.get("facts", "boss").value == "Manager is Daniel"
    finally:
        a.close()
        b.close()
