"""The ceiling for benches/local_model.rs: sentence-transformers (PyTorch,
CPU) embedding the same 256 texts in batches of 32 on the same machine.

    python benches/local_model_ceiling.py "$(scripts/model.sh)"

Needs sentence-transformers and torch (not installed by scripts/; the
numbers in BENCHMARKS.md name the versions used).
"""
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

SENTENCE = ("The loader walks the folder, cuts each document into chunks, "
            "sends them to the embedding model in batches and writes the vectors. ")
texts = [f"Chunk {i}. " + SENTENCE * 7 for i in range(256)]
model = SentenceTransformer(sys.argv[1], device="cpu")
model.encode(texts[:4], batch_size=32)
start = time.perf_counter()
model.encode(texts, batch_size=32)
secs = time.perf_counter() - start
import sentence_transformers
print(f"sentence-transformers {sentence_transformers.__version__} / torch {torch.__version__} "
      f"({torch.get_num_threads()} threads): {len(texts)} chunks in {secs:.2f}s = {len(texts) / secs:.1f} chunks/s")
