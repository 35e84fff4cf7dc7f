#!/usr/bin/env python3
"""Check tests/data/conversations.json and tests/data/crosslingual.json (stdlib only).

Checks the schema, id uniqueness and references, prints per-conversation counts,
question kinds, and how many questions share no content word with their evidence.
Exit status 1 if any error was found.
"""
import json
import os
import re
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONV = os.path.join(ROOT, "tests", "data", "conversations.json")
XL = os.path.join(ROOT, "tests", "data", "crosslingual.json")

LANGS = {"en", "ur", "hi", "zh", "ur-roman"}
KINDS = {"single", "multi-session", "temporal", "name", "paraphrase", "cross-lingual"}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LATIN = re.compile(r"[A-Za-z]")

STOP = set("""
a an the and or but if then so of to in on at by for with from about into over after before up down out off
is am are was were be been being do does did done have has had having will would shall should can could may might must
i me my mine myself we us our ours you your yours he him his she her hers it its they them their theirs
what which who whom whose when where why how this that these those there here all any some no not nor
as than too very just also again now still yet ever already once only more most much many such own same
get got go going went gone let s t d ll ve re m don didn doesn isn aren wasn weren won can't i'm i've i'll
ok okay yes yeah oh hi hey
ka ki ke ko ne se mein me main hai hain tha thi the tho bhi aur ya kya kab kahan kaun kaise kyun kitna kitni kitne
koi kuch ye yeh woh wo us un is in apna apni apne mera meri mere tera teri tere hum tum aap ap na nahi nahin ho hoga hogi
jo jab tak par pe wala wali wale raha rahi rahe gaya gayi gaye liye lye diya di do kar karo kiya ki hy h
hua hui hue tha thin ab phir bhi se ke liye wahan yahan kis kin kisne kisi
""".split())

errors = []


def err(msg):
    errors.append(msg)


STOP_UR = set("""
کا کی کے کو نے سے میں ہے ہیں تھا تھی تھے اور یا کیا کب کہاں کون کیسے کیوں کتنا کتنی کتنے کس کن کسی میرا میری میرے
ہم ہمارے ہماری اس آپ وہ یہ اب بھی تو جو ہو ہوا ہوئی ہوئے ہوگا ہوں گی گا گے پر لیے دیا کر کرتی کرتے نہیں ہی بس جی مجھے
""".split())
STOP_HI = set("""
का की के को ने से में है हैं था थी थे और या क्या कब कहाँ कौन कैसे क्यों कितना कितनी कितने किस किन किसने मेरा मेरी मेरे
हम हमारा हमारे आप वो वह ये यह अब भी तो जो हो हुआ हुई हुए होगा हूँ गी गा गे पर लिए दिया कर किया नहीं ही बस जी मैं मुझे
कौन-सा कौन-सी कौन-से रहे रही रहा आ किसी
""".split())
SPLIT = re.compile(r"[\s,.;:!?()\"'\[\]\u060c\u061f\u06d4\u0964\u2014\u2013-]+")


def words(text, lang="en"):
    """Content words of text: lowercase tokens minus stop words (not for CJK)."""
    if lang in ("en", "ur-roman"):
        return {w for w in re.findall(r"[a-z0-9']+", text.lower())} - STOP
    stop = STOP_UR if lang == "ur" else STOP_HI if lang == "hi" else set()
    return {w for w in SPLIT.split(text.lower()) if w} - stop - STOP


def check_conversations(data):
    if not isinstance(data.get("about"), str) or not data["about"].strip():
        err("conversations: missing 'about'")
    convs = data.get("conversations")
    if not isinstance(convs, list):
        err("conversations: 'conversations' must be a list")
        return []
    rows = []
    seen_ns = set()
    for c in convs:
        ns = c.get("namespace", "?")
        where = f"conversations[{ns}]"
        if ns in seen_ns:
            err(f"{where}: duplicate namespace")
        seen_ns.add(ns)
        extra = set(c) - {"namespace", "language", "speakers", "sessions", "facts", "questions"}
        if extra:
            err(f"{where}: unexpected keys {sorted(extra)}")
        if c.get("language") not in LANGS:
            err(f"{where}: bad language {c.get('language')!r}")
        speakers = c.get("speakers") or []
        if not (isinstance(speakers, list) and len(speakers) == 2):
            err(f"{where}: speakers must be a list of two names")
        turns = {}
        sess_of = {}
        sids = set()
        dates = []
        for s in c.get("sessions", []):
            sid = s.get("id")
            if sid in sids:
                err(f"{where}: duplicate session id {sid}")
            sids.add(sid)
            if not DATE.match(str(s.get("date", ""))):
                err(f"{where}/{sid}: bad date {s.get('date')!r}")
            dates.append(s.get("date"))
            for t in s.get("turns", []):
                tid = t.get("id")
                if set(t) != {"id", "speaker", "text"}:
                    err(f"{where}/{tid}: turn keys {sorted(t)}")
                if tid in turns:
                    err(f"{where}: duplicate turn id {tid}")
                if t.get("speaker") not in speakers:
                    err(f"{where}/{tid}: unknown speaker {t.get('speaker')!r}")
                if not str(t.get("text", "")).strip():
                    err(f"{where}/{tid}: empty text")
                turns[tid] = t.get("text", "")
                sess_of[tid] = sid
        if dates != sorted(dates):
            err(f"{where}: session dates not in order")
        nsess = len(sids)
        if not 6 <= nsess <= 10:
            err(f"{where}: {nsess} sessions (want 6-10)")
        if not 80 <= len(turns) <= 110:
            err(f"{where}: {len(turns)} turns (want 80-110)")
        facts = {}
        for f in c.get("facts", []):
            fid = f.get("id")
            if set(f) != {"id", "text", "turns"}:
                err(f"{where}/{fid}: fact keys {sorted(f)}")
            if fid in facts:
                err(f"{where}: duplicate fact id {fid}")
            facts[fid] = f
            if not f.get("turns"):
                err(f"{where}/{fid}: fact has no turns")
            for tid in f.get("turns", []):
                if tid not in turns:
                    err(f"{where}/{fid}: unknown turn {tid}")
        if not 25 <= len(facts) <= 40:
            err(f"{where}: {len(facts)} facts (want 25-40)")
        qids = set()
        kinds = Counter()
        covered = 0
        nq_lex = 0
        no_overlap = 0
        non_native = 0
        lang = c.get("language")
        for q in c.get("questions", []):
            qid = q.get("id")
            if set(q) != {"id", "question", "evidence", "facts", "kind"}:
                err(f"{where}/{qid}: question keys {sorted(q)}")
            if qid in qids:
                err(f"{where}: duplicate question id {qid}")
            qids.add(qid)
            kind = q.get("kind")
            if kind not in KINDS:
                err(f"{where}/{qid}: bad kind {kind!r}")
            kinds[kind] += 1
            ev = q.get("evidence") or []
            if not ev:
                err(f"{where}/{qid}: no evidence")
            for tid in ev:
                if tid not in turns:
                    err(f"{where}/{qid}: unknown evidence turn {tid}")
            if kind == "multi-session" and len({sess_of.get(t) for t in ev}) < 2:
                err(f"{where}/{qid}: multi-session question with evidence in one session")
            for fid in q.get("facts", []):
                if fid not in facts:
                    err(f"{where}/{qid}: unknown fact {fid}")
            if q.get("facts"):
                covered += 1
            text = q.get("question", "")
            is_english_q = lang in ("ur", "hi", "zh") and LATIN.search(text) and not re.search(r"[\u0600-\u06ff\u0900-\u097f\u4e00-\u9fff]", text)
            if is_english_q:
                non_native += 1
                if kind != "cross-lingual":
                    err(f"{where}/{qid}: English question in {lang} conversation not tagged cross-lingual")
            elif kind == "cross-lingual" and lang in ("ur", "hi", "zh"):
                err(f"{where}/{qid}: cross-lingual question is not English")
            if lang != "zh" and kind != "cross-lingual":
                nq_lex += 1
                qw = words(text, lang)
                ew = set()
                for tid in ev:
                    ew |= words(turns.get(tid, ""), lang)
                if not (qw & ew):
                    no_overlap += 1
                elif kind == "paraphrase":
                    err(f"{where}/{qid}: kind paraphrase but shares {sorted(qw & ew)} with evidence")
        nq = len(qids)
        if not 30 <= nq <= 40:
            err(f"{where}: {nq} questions (want 30-40)")
        if lang in ("ur", "hi", "zh") and non_native != 5:
            err(f"{where}: {non_native} English questions (want 5)")
        if lang == "ur-roman" and kinds["cross-lingual"] != 5:
            err(f"{where}: {kinds['cross-lingual']} cross-lingual questions (want 5)")
        rows.append((ns, lang, nsess, len(turns), len(facts), nq, covered, kinds,
                     (no_overlap, nq_lex) if nq_lex else None))
    return rows


def check_crosslingual(data):
    if not isinstance(data.get("about"), str) or not data["about"].strip():
        err("crosslingual: missing 'about'")
    rows = []
    for n in data.get("namespaces", []):
        ns = n.get("namespace", "?")
        where = f"crosslingual[{ns}]"
        if n.get("language") not in ("ur", "hi", "zh"):
            err(f"{where}: bad language")
        keys = set()
        cats = Counter()
        latin = 0
        for m in n.get("memories", []):
            if set(m) != {"key", "category", "value"}:
                err(f"{where}: memory keys {sorted(m)}")
            k = m.get("key")
            if k in keys:
                err(f"{where}: duplicate key {k}")
            keys.add(k)
            cats[m.get("category")] += 1
            if re.search(r"[A-Za-z0-9]", m.get("value", "")):
                latin += 1
        used = Counter()
        for q in n.get("queries", []):
            if set(q) != {"query", "expected"}:
                err(f"{where}: query keys {sorted(q)}")
            if not q.get("expected"):
                err(f"{where}: query without expected: {q.get('query')}")
            for k in q.get("expected", []):
                used[k] += 1
                if k not in keys:
                    err(f"{where}: unknown expected key {k}")
            if not LATIN.search(q.get("query", "")):
                err(f"{where}: query not English: {q.get('query')}")
        if len(keys) != 30:
            err(f"{where}: {len(keys)} memories (want 30)")
        if len(n.get("queries", [])) != 15:
            err(f"{where}: {len(n.get('queries', []))} queries (want 15)")
        rows.append((ns, len(keys), len(n.get("queries", [])), len(cats), latin))
    return rows


def main():
    with open(CONV, encoding="utf-8") as f:
        conv = json.load(f)
    with open(XL, encoding="utf-8") as f:
        xl = json.load(f)
    rows = check_conversations(conv)
    xrows = check_crosslingual(xl)

    print("conversations.json")
    print(f"{'namespace':<20}{'lang':<10}{'sess':>5}{'turns':>7}{'facts':>7}{'qs':>5}{'w/fact':>8}  no-shared-word (non-cross-lingual qs)")
    tot = Counter()
    allk = Counter()
    for ns, lang, s, t, f, q, cov, kinds, ov in rows:
        ovs = f"{ov[0]}/{ov[1]} ({100 * ov[0] / ov[1]:.0f}%)" if ov else "n/a (CJK, no word boundaries)"
        print(f"{ns:<20}{lang:<10}{s:>5}{t:>7}{f:>7}{q:>5}{cov:>8}  {ovs}")
        tot.update(sessions=s, turns=t, facts=f, questions=q, covered=cov)
        allk.update(kinds)
    print(f"{'TOTAL':<30}{tot['sessions']:>5}{tot['turns']:>7}{tot['facts']:>7}{tot['questions']:>5}{tot['covered']:>8}")
    print()
    kl = sorted(KINDS)
    print(f"{'kinds':<20}" + "".join(f"{k:>15}" for k in kl))
    for ns, lang, s, t, f, q, cov, kinds, ov in rows:
        print(f"{ns:<20}" + "".join(f"{kinds[k]:>15}" for k in kl))
    print(f"{'TOTAL':<20}" + "".join(f"{allk[k]:>15}" for k in kl))
    print()
    print("crosslingual.json")
    print(f"{'namespace':<12}{'memories':>10}{'queries':>9}{'categories':>12}{'w/latin-or-digit':>18}")
    for ns, m, q, c, l in xrows:
        print(f"{ns:<12}{m:>10}{q:>9}{c:>12}{l:>18}")
    print()
    if errors:
        print(f"{len(errors)} error(s):")
        for e in errors:
            print("  " + e)
        sys.exit(1)
    print("OK: no errors")


if __name__ == "__main__":
    main()
