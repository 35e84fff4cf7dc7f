//! The batch statement: a group of operations applied by one upsert (and,
//! when some were not applied, one read-and-touch), and the isolation of
//! rows the server rejects. `super::write` runs these in its transaction.

use super::conn::{classify, Failure, PgConn};
use crate::model::{now_ms, StoreOp, WriteOutcome};
use crate::store::{AttemptError, ItemResult};

/// Applies a group of operations (at most one per key, sorted by key) by
/// the rule of which write wins (see `crate::clock`), exactly as SQLite's
/// writer does:
/// - a save is applied iff its stamp is at least the row's and the row is a
///   tombstone or holds another value or metadata: version + 1 (1 for a new
///   key), a new change number, `created_at` reset on a tombstone;
/// - a forget is applied to a live row whose stamp is at most its own:
///   value `''`, metadata NULL, `deleted`, version + 1, a new change
///   number; a key with no row gets a tombstone (version 0, change 0:
///   nothing to index), which keeps a late older save from bringing it
///   back.
///
/// Returns the rows it wrote; the others are classified by [`TOUCH`].
pub(super) const UPSERT: &str = "
INSERT INTO mnemo.memories AS m (namespace, category, key, value, metadata, version, seq,
                                 change_seq, created_at, updated_at, deleted, hlc)
SELECT i.namespace, i.category, i.key, coalesce(i.value, ''),
       CASE WHEN i.value IS NULL THEN NULL ELSE i.metadata END,
       CASE WHEN i.value IS NULL THEN 0 ELSE 1 END, i.seq,
       CASE WHEN i.value IS NULL THEN 0 ELSE nextval('mnemo.change_seq') END,
       i.at_ms, i.at_ms, i.value IS NULL, i.hlc
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::int8[], $7::int8[], $8::int8[]) WITH ORDINALITY
     AS i(namespace, category, key, value, metadata, seq, hlc, at_ms, ord)
ORDER BY i.ord
ON CONFLICT (namespace, category, key) DO UPDATE SET
    value = excluded.value,
    metadata = excluded.metadata,
    version = m.version + 1,
    seq = excluded.seq,
    change_seq = CASE WHEN excluded.deleted THEN nextval('mnemo.change_seq')
                      ELSE excluded.change_seq END,
    updated_at = excluded.updated_at,
    created_at = CASE WHEN m.deleted THEN excluded.created_at ELSE m.created_at END,
    deleted = excluded.deleted,
    hlc = excluded.hlc,
    tsv = NULL
WHERE excluded.hlc >= m.hlc
  AND CASE WHEN excluded.deleted THEN NOT m.deleted
           ELSE m.deleted
                OR m.value IS DISTINCT FROM excluded.value
                OR m.metadata IS DISTINCT FROM excluded.metadata END
RETURNING m.namespace, m.category, m.key, m.version, m.change_seq, m.deleted";

/// For the operations the upsert did not apply (their rows are locked by
/// it): each row's stamp and version as the upsert saw them, and the row's
/// stamp raised to the operation's (SQLite's touch: the row already says
/// what the operation says, and must now count as that new). A row newer
/// than the operation is left alone (the operation is outdated).
pub(super) const TOUCH: &str = "
WITH i AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) WITH ORDINALITY
        AS i(namespace, category, key, hlc, ord)
), s AS (
    SELECT i.ord, m.hlc, m.version FROM i JOIN mnemo.memories m
        ON m.namespace = i.namespace AND m.category = i.category AND m.key = i.key
), t AS (
    UPDATE mnemo.memories m SET hlc = i.hlc FROM i
    WHERE m.namespace = i.namespace AND m.category = i.category AND m.key = i.key
      AND m.hlc < i.hlc
)
SELECT ord, hlc, version FROM s";

/// Records rows the server rejected, with its reasons.
const DEAD_LETTERS: &str = "
INSERT INTO mnemo.dead_letters (namespace, category, key, value, metadata, seq, reason, failed_at)
SELECT namespace, category, key, value, metadata, seq, reason, $8::int8
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[])
     AS d(namespace, category, key, value, metadata, seq, reason)";

/// The operations of a batch in statements: the k-th operation of each key
/// goes to the k-th group, and each group is sorted by key (byte order).
/// Indices into the batch.
pub(super) fn groups(ops: &[StoreOp]) -> Vec<Vec<usize>> {
    let mut seen: std::collections::HashMap<(&str, &str, &str), usize> =
        std::collections::HashMap::with_capacity(ops.len());
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let p = &op.payload;
        let n = seen
            .entry((p.namespace(), p.category(), p.key()))
            .and_modify(|n| *n += 1)
            .or_insert(0);
        if groups.len() <= *n {
            groups.push(Vec::new());
        }
        groups[*n].push(i);
    }
    for g in &mut groups {
        g.sort_by(|&a, &b| key_of(&ops[a]).cmp(&key_of(&ops[b])));
    }
    groups
}

/// A batch operation's key, in the order rows are locked.
pub(super) fn key_of(op: &StoreOp) -> (&str, &str, &str) {
    let p = &op.payload;
    (p.namespace(), p.category(), p.key())
}

/// Runs one group (`first`, if given, pipelined before it: `BEGIN` or a
/// savepoint). Returns each operation's outcome and the highest change
/// number written.
pub(super) fn apply(
    conn: &mut PgConn,
    ops: &[StoreOp],
    group: &[usize],
    first: Option<&str>,
) -> Result<(Vec<(usize, WriteOutcome)>, i64), Failure> {
    let col = |f: fn(&StoreOp) -> &str| group.iter().map(|&i| f(&ops[i])).collect::<Vec<_>>();
    let ns = col(|o| o.payload.namespace());
    let cat = col(|o| o.payload.category());
    let key = col(|o| o.payload.key());
    let value: Vec<Option<&str>> = group.iter().map(|&i| ops[i].payload.value()).collect();
    let metadata: Vec<Option<&str>> = group.iter().map(|&i| ops[i].payload.metadata()).collect();
    let seq: Vec<i64> = group.iter().map(|&i| ops[i].seq as i64).collect();
    let hlc: Vec<i64> = group.iter().map(|&i| ops[i].hlc as i64).collect();
    let at: Vec<i64> = group.iter().map(|&i| ops[i].payload.at_ms).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
        [&ns, &cat, &key, &value, &metadata, &seq, &hlc, &at];
    let rows = match first {
        Some(first) => conn.pipelined(first, UPSERT, &params)?,
        None => conn.query(UPSERT, &params)?,
    };
    let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; group.len()];
    let mut last_change = 0i64;
    for row in &rows {
        let k = (
            row.try_get::<_, &str>(0)?,
            row.try_get::<_, &str>(1)?,
            row.try_get::<_, &str>(2)?,
        );
        let version: i64 = row.try_get(3)?;
        let change: i64 = row.try_get(4)?;
        let deleted: bool = row.try_get(5)?;
        let Ok(at) = group.binary_search_by(|&i| key_of(&ops[i]).cmp(&k)) else {
            continue;
        };
        let version = version.max(0) as u64;
        outcomes[at] = Some(match (deleted, version) {
            (false, 1) => WriteOutcome::Inserted { version },
            (false, _) => WriteOutcome::Updated { version },
            // A tombstone for a key that had no row.
            (true, 0) => WriteOutcome::NotFound,
            (true, _) => WriteOutcome::Deleted { version },
        });
        last_change = last_change.max(change);
    }
    let rest: Vec<usize> = (0..group.len())
        .filter(|&k| outcomes[k].is_none())
        .collect();
    if !rest.is_empty() {
        let pick =
            |f: fn(&StoreOp) -> &str| rest.iter().map(|&k| f(&ops[group[k]])).collect::<Vec<_>>();
        let ns = pick(|o| o.payload.namespace());
        let cat = pick(|o| o.payload.category());
        let key = pick(|o| o.payload.key());
        let hlc: Vec<i64> = rest.iter().map(|&k| ops[group[k]].hlc as i64).collect();
        for row in conn.query(TOUCH, &[&ns, &cat, &key, &hlc])? {
            let ord: i64 = row.try_get(0)?;
            let row_hlc: i64 = row.try_get(1)?;
            let version: i64 = row.try_get(2)?;
            let Some(&k) = usize::try_from(ord - 1).ok().and_then(|o| rest.get(o)) else {
                continue;
            };
            let op = &ops[group[k]];
            outcomes[k] = Some(if row_hlc as u64 > op.hlc {
                WriteOutcome::Outdated
            } else if op.payload.value().is_some() {
                WriteOutcome::Unchanged {
                    version: version.max(0) as u64,
                }
            } else {
                // Already a tombstone: it now stands for this forget.
                WriteOutcome::NotFound
            });
        }
    }
    let out = group
        .iter()
        .zip(outcomes)
        // The upsert writes or locks a row for every operation: not
        // reached.
        .map(|(&i, o)| (i, o.unwrap_or(WriteOutcome::Outdated)))
        .collect();
    Ok((out, last_change))
}

/// Applies `idx` (sorted, part of one group) in a savepoint; if the server
/// rejects a row, rolls the savepoint back and tries each half, down to
/// single rows, which are recorded in `dead`.
pub(super) fn bisect(
    conn: &mut PgConn,
    ops: &[StoreOp],
    idx: &[usize],
    results: &mut [Option<ItemResult>],
    dead: &mut Vec<(usize, String)>,
    last_change: &mut i64,
) -> Result<(), Failure> {
    match apply(conn, ops, idx, Some("SAVEPOINT isolate")) {
        Ok((outcomes, change)) => {
            conn.batch("RELEASE SAVEPOINT isolate")?;
            *last_change = (*last_change).max(change);
            for (i, o) in outcomes {
                results[i] = Some(ItemResult::Written(o));
            }
            Ok(())
        }
        Err(f) => match classify(&f) {
            AttemptError::Row(reason) => {
                conn.batch("ROLLBACK TO SAVEPOINT isolate; RELEASE SAVEPOINT isolate")?;
                if let [i] = idx {
                    dead.push((*i, reason));
                    return Ok(());
                }
                let (a, b) = idx.split_at(idx.len() / 2);
                bisect(conn, ops, a, results, dead, last_change)?;
                bisect(conn, ops, b, results, dead, last_change)
            }
            _ => Err(f),
        },
    }
}

/// Records the rejected operations in `dead_letters`, with the reasons.
pub(super) fn dead_letter(
    conn: &mut PgConn,
    ops: &[StoreOp],
    dead: &[(usize, String)],
) -> Result<(), Failure> {
    let p = |i: usize| &ops[i].payload;
    let ns: Vec<&str> = dead.iter().map(|d| p(d.0).namespace()).collect();
    let cat: Vec<&str> = dead.iter().map(|d| p(d.0).category()).collect();
    let key: Vec<&str> = dead.iter().map(|d| p(d.0).key()).collect();
    let value: Vec<Option<&str>> = dead.iter().map(|d| p(d.0).value()).collect();
    let metadata: Vec<Option<&str>> = dead.iter().map(|d| p(d.0).metadata()).collect();
    let seq: Vec<i64> = dead.iter().map(|d| ops[d.0].seq as i64).collect();
    let reason: Vec<&str> = dead.iter().map(|d| d.1.as_str()).collect();
    let now = now_ms();
    conn.execute(
        DEAD_LETTERS,
        &[&ns, &cat, &key, &value, &metadata, &seq, &reason, &now],
    )?;
    Ok(())
}
