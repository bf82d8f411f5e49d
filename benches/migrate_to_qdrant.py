#!/usr/bin/env python3
"""Baseline for issue #7: a re-implementation of the users' `migrate_to_qdrant.py`.

    migrate_to_qdrant.py --source-docs DIR --tenant-id T --batch-size 100

Sequential on purpose, as the original: read and chunk every document, then for
each batch of chunks embed it (one POST {host}/embeddings), upsert it into Qdrant
with wait=True, and only then go on to the next batch. Configuration comes from
the same environment as the RAG API (LightRAG): QDRANT_URL, QDRANT_API_KEY,
EMBEDDING_BINDING_HOST, EMBEDDING_MODEL, EMBEDDING_DIM, EMBEDDING_BINDING_API_KEY.
Chunking is LightRAG's chunking_by_token_size with tiktoken o200k_base.
"""
import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import requests
import tiktoken
from qdrant_client import QdrantClient
from qdrant_client.models import Distance, PointStruct, VectorParams

EXTENSIONS = {".txt", ".md", ".markdown", ".jsonl", ".json"}


def iter_documents(root):
    """Yield (source, text) for every document under root, in a stable order."""
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        ext = path.suffix.lower()
        if ext not in EXTENSIONS:
            continue
        rel = path.relative_to(root).as_posix()
        if ext == ".jsonl":
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    line = line.strip()
                    if not line:
                        continue
                    record = json.loads(line)
                    text = record.get("content") or record.get("text") or ""
                    yield f"{rel}#L{lineno}", text
        elif ext == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            records = data if isinstance(data, list) else [data]
            for i, record in enumerate(records):
                text = (record.get("content") or record.get("text") or "") if isinstance(record, dict) else str(record)
                yield (f"{rel}#{i}" if isinstance(data, list) else rel), text
        else:
            yield rel, path.read_text(encoding="utf-8", errors="replace")


def chunking_by_token_size(enc, content, chunk_tokens, overlap):
    """LightRAG's chunking_by_token_size: encode once, a window every size-overlap tokens."""
    tokens = enc.encode(content)
    chunks = []
    for start in range(0, len(tokens), chunk_tokens - overlap):
        chunks.append(enc.decode(tokens[start:start + chunk_tokens]).strip())
    return chunks


def embed(session, host, model, api_key, texts, max_retries=8):
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for attempt in range(max_retries + 1):
        try:
            r = session.post(f"{host.rstrip('/')}/embeddings", json={"model": model, "input": texts},
                             headers=headers, timeout=120)
        except requests.RequestException as e:
            if attempt == max_retries:
                raise
            print(f"embedding request failed ({e}), retrying", file=sys.stderr)
            time.sleep(2 ** attempt)
            continue
        if r.status_code == 429 or r.status_code >= 500:
            if attempt == max_retries:
                r.raise_for_status()
            wait = float(r.headers.get("Retry-After") or 2 ** attempt)
            print(f"embedding endpoint answered {r.status_code}, retrying in {wait}s", file=sys.stderr)
            time.sleep(wait)
            continue
        r.raise_for_status()
        data = sorted(r.json()["data"], key=lambda d: d["index"])
        return [d["embedding"] for d in data]


def main():
    ap = argparse.ArgumentParser(description="Re-embed documents and upload them to Qdrant")
    ap.add_argument("--source-docs", required=True)
    ap.add_argument("--tenant-id", required=True)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--collection", default="documents")
    ap.add_argument("--chunk-tokens", type=int, default=1200)
    ap.add_argument("--chunk-overlap", type=int, default=100)
    ap.add_argument("--json-out")
    args = ap.parse_args()

    qdrant_url = os.environ.get("QDRANT_URL", "http://localhost:6333")
    host = os.environ["EMBEDDING_BINDING_HOST"]
    model = os.environ["EMBEDDING_MODEL"]
    dim = int(os.environ["EMBEDDING_DIM"])
    api_key = os.environ.get("EMBEDDING_BINDING_API_KEY")

    start = time.perf_counter()
    client = QdrantClient(url=qdrant_url, api_key=os.environ.get("QDRANT_API_KEY"), timeout=60)
    if not client.collection_exists(args.collection):
        client.create_collection(args.collection,
                                 vectors_config=VectorParams(size=dim, distance=Distance.COSINE))

    enc = tiktoken.get_encoding("o200k_base")
    chunks = []  # (id, source, chunk_index, content)
    for source, text in iter_documents(args.source_docs):
        for i, content in enumerate(chunking_by_token_size(enc, text, args.chunk_tokens, args.chunk_overlap)):
            if not content:
                continue
            point_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{args.tenant_id}/{source}/{i}"))
            chunks.append((point_id, source, i, content))
    chunk_seconds = time.perf_counter() - start
    print(f"{len(chunks)} chunks from {args.source_docs} in {chunk_seconds:.2f}s", file=sys.stderr)

    session = requests.Session()
    written = 0
    embed_seconds = upsert_seconds = 0.0
    for b in range(0, len(chunks), args.batch_size):
        batch = chunks[b:b + args.batch_size]
        t0 = time.perf_counter()
        vectors = embed(session, host, model, api_key, [c[3] for c in batch])
        t1 = time.perf_counter()
        points = [PointStruct(id=pid, vector=vec,
                              payload={"tenant_id": args.tenant_id, "source": source,
                                       "chunk_index": idx, "content": content})
                  for (pid, source, idx, content), vec in zip(batch, vectors)]
        client.upsert(collection_name=args.collection, points=points, wait=True)
        t2 = time.perf_counter()
        embed_seconds += t1 - t0
        upsert_seconds += t2 - t1
        written += len(points)
        print(f"batch {b // args.batch_size + 1}: {written}/{len(chunks)} written", file=sys.stderr)

    elapsed = time.perf_counter() - start
    result = {"chunks": len(chunks), "vectors_written": written, "elapsed_seconds": round(elapsed, 3),
              "vectors_per_second": round(written / elapsed, 1) if elapsed else 0.0,
              "chunk_seconds": round(chunk_seconds, 3), "embed_seconds": round(embed_seconds, 3),
              "upsert_seconds": round(upsert_seconds, 3)}
    print(f"chunks: {result['chunks']}\nvectors written: {written}\n"
          f"elapsed: {elapsed:.2f}s\nvectors/s: {result['vectors_per_second']}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
