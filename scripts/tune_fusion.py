#!/usr/bin/env python3
"""Tunes the fusion of the lexical and vector rankings on every test set.

Reads the dump written by `tests/fusion_tuning.rs` (the lexical top 50 with
bm25 scores, and each embedder's cosine with every memory, per question) and
replays fusion functions over it, printing recall@1 / recall@5 per set beside
lexical alone. The function shipped in `crates/mnemo/src/search/fusion.rs` is
`fused` below with the chosen parameters; `docs/retrieval.md` ("Fusion")
gives the figures.

    cargo test --release --features minilm,e5 --test fusion_tuning -- --ignored
    python3 scripts/tune_fusion.py [target/fusion_tuning.json]
"""
import itertools
import json
import sys

DEPTH = 20  # each side's list, as the engine fuses them
BACKGROUND = 50  # how deep the vector side looks for its background


def recall(ranked_lists, probes):
    at1 = at5 = 0
    for got, p in zip(ranked_lists, probes):
        exp = set(p["expected"])
        if got[:1] and got[0] in exp:
            at1 += 1
        if any(k in exp for k in got[:5]):
            at5 += 1
    n = len(probes)
    return (100.0 * at1 / n, 100.0 * at5 / n) if n else (0.0, 0.0)


def lexical(p):
    return [k for k, _ in p["lexical"]]


def vector_list(p, model, floor):
    sims = sorted(p[model].items(), key=lambda kv: -kv[1])
    return [(k, s) for k, s in sims if s >= floor]


def rrf(p, model, floor, k=60.0):
    score = {}
    order = {}
    for r, key in enumerate(lexical(p)[:DEPTH]):
        score[key] = score.get(key, 0) + 1 / (k + r + 1)
        order[key] = r
    for r, (key, _) in enumerate(vector_list(p, model, floor)[:DEPTH]):
        score[key] = score.get(key, 0) + 1 / (k + r + 1)
    return sorted(score, key=lambda x: (-score[x], order.get(x, 10**9)))


def fused(p, model, floor, w, spread_ref, lex_conf):
    """Convex combination of normalised scores.

    Lexical: bm25 / the best bm25 (1 for the top hit). Vector: similarity
    above the background (the BACKGROUND-th best similarity of the namespace,
    or the lowest), as a share of the top's height above it; its weight is
    w, scaled down when the top stands less than spread_ref above the
    background (the model does not know). With no lexical hit the vector
    side alone ranks.
    """
    lex = p["lexical"][:DEPTH]
    allv = sorted(p[model].values(), reverse=True)
    vec = vector_list(p, model, floor)[:DEPTH]
    if not vec:
        return [k for k, _ in lex]
    top = vec[0][1]
    bg = allv[min(BACKGROUND, len(allv)) - 1]
    height = max(top - bg, 1e-9)
    conf = min(1.0, height / spread_ref) if spread_ref > 0 else 1.0
    wv = w * conf
    score = {}
    order = {}
    if lex:
        best = lex[0][1] if lex[0][1] > 0 else 1.0
        for r, (key, s) in enumerate(lex):
            score[key] = lex_conf * max(s, 0.0) / best
            order[key] = r
    for key, s in vec:
        score[key] = score.get(key, 0.0) + wv * max(0.0, (s - bg) / height)
    return sorted(score, key=lambda x: (-score[x], order.get(x, 10**9)))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "target/fusion_tuning.json"
    sets = [s for s in json.load(open(path)) if s["probes"]]
    models = [m for m in ("ngram", "minilm", "e5") if m in sets[0]["probes"][0]]
    floors = {"ngram": 0.05, "minilm": 0.2, "e5": 0.7}
    print("lexical:", {s["set"]: recall([lexical(p) for p in s["probes"]], s["probes"]) for s in sets})
    for m in models:
        print(f"\n== {m}")
        print("  rrf:", {s["set"]: recall([rrf(p, m, floors[m]) for p in s["probes"]], s["probes"]) for s in sets})
        results = []
        for w, spread, lc in itertools.product(
            [0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.5], [0.0, 0.05, 0.1, 0.15, 0.2], [1.0]
        ):
            per = {}
            ok = True
            total = 0.0
            for s in sets:
                lx = recall([lexical(p) for p in s["probes"]], s["probes"])
                r = recall([fused(p, m, floors[m], w, spread, lc) for p in s["probes"]], s["probes"])
                per[s["set"]] = r
                if r[0] < lx[0] or r[1] < lx[1]:
                    ok = False
                total += r[0] + r[1]
            results.append((ok, total, w, spread, per))
        results.sort(key=lambda x: (-x[0], -x[1]))
        for ok, total, w, spread, per in results[:6]:
            print(f"  ok={ok} total={total:.1f} w={w} spread={spread}", {k: (round(a, 1), round(b, 1)) for k, (a, b) in per.items()})


if __name__ == "__main__":
    main()


def script(text):
    """The dominant script of a text's letters: latin, arabic, devanagari,
    cjk or other (None without letters)."""
    counts = {}
    for c in text:
        if not c.isalpha():
            continue
        o = ord(c)
        if o < 0x250 or 0x1E00 <= o <= 0x1EFF or 0xFF21 <= o <= 0xFF5A:
            s = "latin"
        elif 0x600 <= o <= 0x6FF or 0x750 <= o <= 0x77F or 0xFB50 <= o <= 0xFEFF:
            s = "arabic"
        elif 0x900 <= o <= 0x97F:
            s = "devanagari"
        elif 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF:
            s = "cjk"
        else:
            s = "other"
        counts[s] = counts.get(s, 0) + 1
    return max(counts, key=counts.get) if counts else None
