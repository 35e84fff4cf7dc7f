use super::format::tests::payload;
use super::*;

fn append_n(j: &mut Journal, from: u64, to: u64) -> Result<()> {
    for seq in from..=to {
        j.append(
            seq,
            seq << 16,
            &payload(&format!("k{seq}"), Some("some value"), None),
        )?;
    }
    Ok(())
}

fn seqs(o: &Orphan) -> Vec<u64> {
    o.records.iter().map(|r| r.seq).collect()
}

#[test]
fn journal_rotates_retires_and_is_found_by_the_next_process() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("m.db");
    let mut j = Journal::create(&dir_for(&db), JournalSync::Never, 1024)?;
    append_n(&mut j, 1, 100)?;
    assert!(j.segments.len() > 2);
    // a live journal is not an orphan
    assert!(orphans(&dir_for(&db))?.is_empty());
    drop(j.committed_through(50));
    assert!(j.segments.front().unwrap().last_seq > 50);
    // the owner dies without cleaning up (drop releases the locks)
    drop(j);
    let found = orphans(&dir_for(&db))?;
    assert_eq!(found.len(), 1);
    let s = seqs(&found[0]);
    assert!(s.windows(2).all(|w| w[1] == w[0] + 1), "in order, no gaps");
    assert_eq!(*s.last().unwrap(), 100);
    assert!(s[0] <= 51, "uncommitted records are all kept");
    assert!(found[0].damaged.is_empty());
    for o in found {
        assert!(o.retire()?.is_empty());
    }
    assert!(orphans(&dir_for(&db))?.is_empty());
    assert_eq!(fs::read_dir(dir_for(&db))?.count(), 0);
    Ok(())
}

#[test]
fn a_journal_whose_lock_file_was_deleted_is_still_found() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("m.db");
    let mut j = Journal::create(&dir_for(&db), JournalSync::Never, 4096)?;
    append_n(&mut j, 1, 10)?;
    let lock = dir_for(&db).join(format!("{}.lock", j.id()));
    fs::remove_file(&lock)?;
    // The owner lives: its segments stay locked, recovery leaves them.
    assert!(orphans(&dir_for(&db))?.is_empty());
    assert!(!lock.exists(), "no stray lock file is left behind");
    drop(j);
    let found = orphans(&dir_for(&db))?;
    assert_eq!(found.len(), 1);
    assert_eq!(seqs(&found[0]), (1..=10).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn a_damaged_segment_is_moved_aside_and_the_rest_is_read() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("m.db");
    let mut j = Journal::create(&dir_for(&db), JournalSync::Never, 2048)?;
    append_n(&mut j, 1, 100)?;
    let paths: Vec<PathBuf> = j.segments.iter().map(|s| s.path.clone()).collect();
    drop(j);
    assert!(paths.len() > 2);
    // flip a byte in the middle of the second segment, truncate the third
    let mut bytes = fs::read(&paths[1])?;
    bytes[600] ^= 0xff;
    fs::write(&paths[1], &bytes)?;
    fs::OpenOptions::new()
        .write(true)
        .open(&paths[2])?
        .set_len(0)?;
    let found = orphans(&dir_for(&db))?;
    let o = &found[0];
    assert_eq!(o.damaged.len(), 2);
    let n = o.records.len();
    assert!((100 - 1 - 40..100).contains(&n), "{n} records read");
    let kept = found.into_iter().next().unwrap().retire()?;
    assert_eq!(kept.len(), 2);
    assert!(kept
        .iter()
        .all(|p| p.exists() && p.parent().unwrap().ends_with(DAMAGED_DIR)));
    assert!(
        orphans(&dir_for(&db))?.is_empty(),
        "moved aside, not replayed again"
    );
    Ok(())
}

#[test]
fn the_spare_segment_is_made_ahead_and_used_in_index_order() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("m.db");
    let mut j = Journal::create(&dir_for(&db), JournalSync::Never, 1024)?;
    assert!(
        j.spare_wanted().is_none(),
        "an empty segment wants no spare"
    );
    let mut seq = 0;
    let mut fill_until = |j: &mut Journal, done: &dyn Fn(&Journal) -> bool| -> Result<()> {
        while !done(j) {
            seq += 1;
            append_n(j, seq, seq)?;
        }
        Ok(())
    };
    fill_until(&mut j, &|j| j.segments[0].room() < 512)?;
    let (path, index, size) = j.spare_wanted().expect("half full: a spare");
    assert!(j.spare_wanted().is_none(), "one spare at a time");
    assert!(j
        .install_spare(Segment::create(path.clone(), index, size))
        .is_none());
    assert_eq!(j.bytes(), 2048, "the spare counts as journal bytes");
    let next_before = j.next_index;
    fill_until(&mut j, &|j| j.segments.len() > 1)?;
    assert_eq!(j.segments[1].path, path, "the rotation used the spare");
    assert_eq!(j.next_index, next_before, "and created no file");

    // A spare that arrives after a rotation made a later segment is
    // deleted, not used out of order.
    fill_until(&mut j, &|j| j.segments[1].room() < 512)?;
    let (path, index, size) = j.spare_wanted().expect("a second spare");
    fill_until(&mut j, &|j| j.segments.len() > 2)?;
    let stale = j.install_spare(Segment::create(path.clone(), index, size));
    assert!(stale.is_some() && j.spare.is_none());
    drop(stale);
    assert!(!path.exists(), "the stale spare was deleted");

    // An orphaned journal with a spare replays every record in order.
    fill_until(&mut j, &|j| j.segments[2].room() < 512)?;
    let (path, index, size) = j.spare_wanted().expect("a third spare");
    assert!(j
        .install_spare(Segment::create(path, index, size))
        .is_none());
    let last = j.last_appended;
    drop(j);
    let found = orphans(&dir_for(&db))?;
    assert_eq!(seqs(&found[0]), (1..=last).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn a_segment_that_cannot_be_made_leaves_no_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("m.db");
    let mut j = Journal::create(&dir_for(&db), JournalSync::Never, 1024)?;
    append_n(&mut j, 1, 12)?;
    let (path, index, _) = j.spare_wanted().expect("a spare");
    // The file is created, then reserving its space fails.
    assert!(j
        .install_spare(Segment::create(path.clone(), index, 1 << 62))
        .is_none());
    assert!(!path.exists(), "the failed spare's file is gone");
    let names: Vec<_> = fs::read_dir(dir_for(&db))?
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")),
        "{names:?}"
    );
    assert!(j.spare_wanted().is_some(), "and another is asked for");
    drop(j.remove(12, false));
    assert_eq!(fs::read_dir(dir_for(&db))?.count(), 0);
    Ok(())
}

#[test]
fn batch_sync_covers_every_segment_written_since_the_last_sync() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("m.db");
    let mut j = Journal::create(&dir_for(&db), JournalSync::Batch, 1024)?;
    let sync_all = |j: &mut Journal| -> usize {
        let handles = j.sync_handles();
        for (index, len, map) in &handles {
            map.flush().expect("msync");
            j.synced(*index, *len);
        }
        handles.len()
    };
    append_n(&mut j, 1, 3)?;
    assert_eq!(j.sync_handles().len(), 1);
    assert_eq!(j.sync_handles().len(), 1, "not synced until reported");
    assert_eq!(sync_all(&mut j), 1);
    assert!(j.sync_handles().is_empty(), "nothing new");
    // enough to rotate twice
    append_n(&mut j, 4, 30)?;
    assert!(j.segments.len() >= 3);
    assert_eq!(sync_all(&mut j), j.segments.len());
    Ok(())
}

#[test]
fn clean_removal_only_when_everything_committed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("m.db");
    let mut j = Journal::create(&dir_for(&db), JournalSync::Always, SEGMENT_BYTES)?;
    append_n(&mut j, 1, 1)?;
    assert!(j.remove(0, false).is_none(), "kept: not committed");
    assert_eq!(orphans(&dir_for(&db))?.len(), 1);
    let mut j = Journal::create(&dir_for(&db), JournalSync::Never, SEGMENT_BYTES)?;
    append_n(&mut j, 5, 5)?;
    drop(j.remove(5, false));
    Ok(())
}

/// The owner rotates into a new segment and dies between recovery's
/// directory listing and its locks: the new segment is still read (the
/// segments are listed again once the journal is locked).
#[cfg(feature = "failpoints")]
#[test]
fn a_segment_made_between_the_listing_and_the_lock_is_read() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("m.db");
    let mut j = Journal::create(&dir_for(&db), JournalSync::Never, 1024)?;
    append_n(&mut j, 1, 3)?;
    let owner = Arc::new(parking_lot::Mutex::new(Some(j)));
    let hook = owner.clone();
    let me = std::thread::current().id();
    fail::cfg_callback("mnemo::orphans_listed", move || {
        if std::thread::current().id() != me {
            return; // another test's scan
        }
        if let Some(mut j) = hook.lock().take() {
            append_n(&mut j, 4, 40).expect("append");
            assert!(j.segments.len() > 2, "rotated");
            drop(j); // the owner dies
        }
    })
    .map_err(io::Error::other)?;
    let found = orphans(&dir_for(&db));
    fail::remove("mnemo::orphans_listed");
    let found = found?;
    assert!(owner.lock().is_none(), "the hook ran");
    assert_eq!(seqs(&found[0]), (1..=40).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn a_lock_file_left_under_its_temporary_name_is_removed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("m.db");
    fs::create_dir_all(dir_for(&db))?;
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
    // An engine died between creating its lock file and renaming it.
    let stray = dir_for(&db).join("123-18eb65702f674c86.lock.tmp");
    File::create(&stray)?.set_modified(old)?;
    // One being made right now (its creator holds the lock) stays, and so
    // does a new one not locked yet (its creator is about to).
    let live = dir_for(&db).join("124-18eb65702f674c87.lock.tmp");
    let held = File::create(&live)?;
    held.try_lock().map_err(io::Error::other)?;
    held.set_modified(old)?;
    let fresh = dir_for(&db).join("125-18eb65702f674c88.lock.tmp");
    File::create(&fresh)?;
    assert!(orphans(&dir_for(&db))?.is_empty());
    assert!(!stray.exists(), "the stray is gone");
    assert!(
        live.exists() && fresh.exists(),
        "the live ones are left alone"
    );
    Ok(())
}

/// A full segment's pages are dropped from the resident set at rotation
/// (`take_filled` + `release_pages`, as `save` does): its records are
/// still synced and still read back by the next process.
#[test]
fn released_segments_keep_their_records() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("m.db");
    let mut j = Journal::create(&dir_for(&db), JournalSync::Batch, 1024)?;
    assert!(j.take_filled().is_none(), "creation fills nothing");
    let mut released = 0;
    for seq in 1..=60 {
        append_n(&mut j, seq, seq)?;
        if let Some(map) = j.take_filled() {
            segment::release_pages(&map);
            released += 1;
        }
    }
    assert_eq!(released, j.segments.len() - 1, "one per rotation");
    for (index, len, map) in j.sync_handles() {
        map.flush().expect("msync of a released segment");
        j.synced(index, len);
    }
    drop(j);
    let found = orphans(&dir_for(&db))?;
    assert_eq!(found.len(), 1);
    assert_eq!(seqs(&found[0]), (1..=60).collect::<Vec<_>>());
    assert!(found[0].damaged.is_empty());
    Ok(())
}
