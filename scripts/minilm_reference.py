"""Reference vectors for tests/minilm.rs, from sentence-transformers itself.

Not run by CI (it needs torch): run once by hand to (re)make
tests/data/minilm_reference.json, with the model fetched by
scripts/fetch-minilm.sh:

    python -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
    HF_HUB_OFFLINE=1 /tmp/st/bin/python scripts/minilm_reference.py \
        models/all-MiniLM-L6-v2 > tests/data/minilm_reference.json
"""
import json
import sys

import sentence_transformers
from sentence_transformers import SentenceTransformer

TEXTS = [
    "Grows tomatoes and basil on the balcony",
    "husband",
    "married to Daniel",
    "I love cooking!",
    "sister_name\nfamily\nMy sister is called Lin",
    "مجھے چائے پسند ہے",
    "我每天早上喝咖啡",
    # longer than 256 word pieces: cut off like sentence-transformers does
    " ".join(["the quick brown fox jumps over the lazy dog"] * 40),
]

model = SentenceTransformer(sys.argv[1], device="cpu")
model.max_seq_length = 256
vectors = model.encode(TEXTS, normalize_embeddings=True)
json.dump(
    {
        "made_by": f"sentence-transformers {sentence_transformers.__version__}, scripts/minilm_reference.py",
        "cases": [
            {"text": t, "vector": [round(float(x), 7) for x in v]}
            for t, v in zip(TEXTS, vectors)
        ],
    },
    sys.stdout,
    ensure_ascii=False,
)
