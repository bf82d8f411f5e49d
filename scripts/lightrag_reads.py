"""Reads what `vecload --layout lightrag` wrote with LightRAG's own storage
classes (lightrag-hku 1.5.7: QdrantVectorDBStorage, PGVectorStorage), the
way the RAG API does: its names (model suffix), workspace filter, point ids
and columns. For each chunk of a LightRAG chunk store (JSON) it asks:
- get_by_id(chunk id): LightRAG finds the record under its own id;
- query(chunk text, top_k=1): the nearest record is that chunk.
Prints one JSON line: {"checked": n, "found": n, "nearest_is_itself": n}.
With --write it instead upserts the chunks through the same class (LightRAG
embeds and writes them, as its ingest does) and prints {"written": n}.

Usage (the tests run it when VECLOAD_LIGHTRAG_PYTHON names a Python with
lightrag-hku installed; scripts/test.sh makes that venv):

    python scripts/lightrag_reads.py --storage qdrant|pgvector \
        --workspace acme --model MODEL --dim 24 --embed-url URL \
        --chunks fixtures/lightrag/acme/kv_store_text_chunks.json

Connection settings come from the environment, as for the RAG API:
QDRANT_URL (and QDRANT_API_KEY), or POSTGRES_HOST, POSTGRES_PORT,
POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DATABASE.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import urllib.request

import numpy as np


def embedder(url: str, model: str):
    async def embed(texts, **_kwargs):
        body = json.dumps({"input": list(texts), "model": model}).encode()
        req = urllib.request.Request(
            url.rstrip("/") + "/embeddings",
            data=body,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req) as resp:
            data = json.load(resp)["data"]
        data.sort(key=lambda d: d["index"])
        return np.array([d["embedding"] for d in data], dtype=np.float32)

    return embed


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storage", choices=["qdrant", "pgvector"], required=True)
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--embed-url", required=True)
    ap.add_argument("--chunks", required=True)
    ap.add_argument(
        "--write",
        action="store_true",
        help="upsert the chunks with LightRAG's own storage class (it embeds them) instead of reading",
    )
    args = ap.parse_args()

    from lightrag.kg.shared_storage import initialize_share_data
    from lightrag.utils import EmbeddingFunc

    initialize_share_data()

    func = EmbeddingFunc(
        embedding_dim=args.dim,
        func=embedder(args.embed_url, args.model),
        model_name=args.model,
    )
    working_dir = tempfile.mkdtemp(prefix="lightrag-reads-")
    global_config = {
        "working_dir": working_dir,
        "embedding_batch_num": 16,
        "vector_db_storage_cls_kwargs": {"cosine_better_than_threshold": -1.0},
    }
    if args.storage == "qdrant":
        from lightrag.kg.qdrant_impl import QdrantVectorDBStorage as Storage

        os.environ["QDRANT_WORKSPACE"] = args.workspace
    else:
        from lightrag.kg.postgres_impl import PGVectorStorage as Storage

        os.environ["POSTGRES_WORKSPACE"] = args.workspace
    store = Storage(
        namespace="chunks",
        global_config=global_config,
        embedding_func=func,
        workspace=args.workspace,
        meta_fields={"full_doc_id", "content", "file_path"},
    )
    await store.initialize()
    chunks = json.load(open(args.chunks, encoding="utf-8"))
    if args.write:
        # As LightRAG's ingest writes its chunk vectors: it embeds `content`.
        await store.upsert({key: dict(rec) for key, rec in chunks.items()})
        await store.index_done_callback()
        await store.finalize()
        print(json.dumps({"written": len(chunks)}))
        return 0
    found = nearest = 0
    for key, rec in chunks.items():
        got = await store.get_by_id(key)
        if got and got.get("content") == rec["content"]:
            found += 1
        hits = await store.query(rec["content"], top_k=1)
        if hits and hits[0].get("id") == key:
            nearest += 1
    await store.finalize()
    print(json.dumps({"checked": len(chunks), "found": found, "nearest_is_itself": nearest}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
