"""Builds a LightRAG workspace with LightRAG's own storage classes
(lightrag-hku 1.5.7), the way its ingest leaves one: the text-chunk store
(JsonKVStorage, kv_store_text_chunks.json), the graph (NetworkXStorage,
graph_chunk_entity_relation.graphml) and the three vector stores in
PostgreSQL (PGVectorStorage: chunks, entities, relationships), with ids as
LightRAG computes them. Then it makes the drift LightRAG's users report
(issue #2917): some chunks, entities and relations get no vector, and some
vectors are left of entities that are gone.

Prints one JSON line: what it made and what it broke.

    python scripts/lightrag_workspace.py --dir DIR --workspace acme --model M \
        --dim 16 --embed-url URL --chunks fixtures/lightrag/acme/kv_store_text_chunks.json

With --find NAME it makes nothing: it asks LightRAG's own stores of the
workspace what a query for the entity NAME's text finds (the entity and
the relations of its graph), and prints that as one JSON line.

Connection settings come from POSTGRES_* as for the RAG API.
"""

import argparse
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lightrag_reads import embedder  # noqa: E402


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--embed-url", required=True)
    ap.add_argument("--chunks")
    ap.add_argument("--find")
    args = ap.parse_args()

    from lightrag.kg.json_kv_impl import JsonKVStorage
    from lightrag.kg.networkx_impl import NetworkXStorage
    from lightrag.kg.postgres_impl import PGVectorStorage
    from lightrag.kg.shared_storage import initialize_share_data
    from lightrag.utils import EmbeddingFunc, compute_mdhash_id

    initialize_share_data()
    os.environ["POSTGRES_WORKSPACE"] = args.workspace
    func = EmbeddingFunc(
        embedding_dim=args.dim,
        func=embedder(args.embed_url, args.model),
        model_name=args.model,
    )
    config = {
        "working_dir": args.dir,
        "embedding_batch_num": 16,
        "vector_db_storage_cls_kwargs": {"cosine_better_than_threshold": -1.0},
    }
    common = dict(global_config=config, embedding_func=func, workspace="")
    chunks_kv = JsonKVStorage(namespace="text_chunks", **common)
    graph = NetworkXStorage(namespace="chunk_entity_relation", **common)
    vdb = {
        ns: PGVectorStorage(
            namespace=ns,
            global_config=config,
            embedding_func=func,
            workspace=args.workspace,
            meta_fields=fields,
        )
        for ns, fields in [
            ("chunks", {"full_doc_id", "content", "file_path"}),
            ("entities", {"entity_name", "content", "source_id", "file_path"}),
            ("relationships", {"src_id", "tgt_id", "content", "source_id", "file_path"}),
        ]
    }
    for s in [chunks_kv, graph, *vdb.values()]:
        await s.initialize()

    if args.find:
        found = await find(args.find, graph, vdb)
        for s in [chunks_kv, graph, *vdb.values()]:
            await s.finalize()
        print(json.dumps(found, ensure_ascii=False))
        return 0

    chunks = json.load(open(args.chunks, encoding="utf-8"))
    await chunks_kv.upsert(chunks)
    keys = sorted(chunks)
    # Chunk vectors for all but the first chunk.
    await vdb["chunks"].upsert({k: dict(chunks[k]) for k in keys[1:]})

    names = ["Qdrant", "PostgreSQL", "向量检索", "LightRAG", "Amazon Bedrock", "Tenant & Co"]
    for n in names:
        await graph.upsert_node(
            n, {"entity_id": n, "entity_type": "concept", "description": f"{n} is a thing.",
                "source_id": keys[0], "file_path": "a.md"}
        )
    pairs = [(names[i], names[i + 1]) for i in range(len(names) - 1)]
    for a, b in pairs:
        await graph.upsert_edge(
            a, b, {"weight": "1.0", "description": f"{a} and {b}", "keywords": "k",
                   "source_id": keys[0], "file_path": "a.md"}
        )
    # Entity vectors for all but the last name, plus one of a name the
    # graph no longer has.
    await vdb["entities"].upsert(
        {
            compute_mdhash_id(n, prefix="ent-"): {
                "entity_name": n, "content": f"{n}\n{n} is a thing.",
                "source_id": keys[0], "file_path": "a.md",
            }
            for n in names[:-1] + ["Deleted Entity"]
        }
    )
    # Relation vectors as LightRAG ids them (smaller name first), all but
    # the first pair; the second pair's of the description it had before
    # the graph's was updated (a stale vector).
    rels = {}
    for i, (a, b) in enumerate(pairs[1:]):
        s, t = (b, a) if a > b else (a, b)
        said = "an older description" if i == 0 else f"{a} and {b}"
        rels[compute_mdhash_id(s + t, prefix="rel-")] = {
            "src_id": s, "tgt_id": t, "content": f"k\t{s}\n{t}\n{said}",
            "source_id": keys[0], "file_path": "a.md",
        }
    await vdb["relationships"].upsert(rels)
    await graph.index_done_callback()
    await chunks_kv.index_done_callback()
    for s in [chunks_kv, graph, *vdb.values()]:
        await s.finalize()
    print(json.dumps({
        "chunks": len(keys), "entities": len(names), "relations": len(pairs),
        "chunk_without_vector": keys[0],
        "entity_without_vector": names[-1],
        "entity_vectors_of_nothing": 1,
        "relation_without_vector": list(pairs[0]),
        "relation_stale": list(pairs[1]),
    }, ensure_ascii=False))
    return 0


async def find(name, graph, vdb):
    """What LightRAG's own stores answer for the entity `name`: its node,
    the top entity for a query of its vector text, and the top relation for
    each of its edges' texts (LightRAG's ids and texts, smaller name first)."""
    node = await graph.get_node(name)
    text = f"{name}\n{node['description']}"
    hits = await vdb["entities"].query(text, top_k=1)
    relations = []
    for a, b in await graph.get_node_edges(name) or []:
        edge = await graph.get_edge(a, b)
        s, t = (b, a) if a > b else (a, b)
        rel_text = f"{edge['keywords']}\t{s}\n{t}\n{edge['description']}"
        top = await vdb["relationships"].query(rel_text, top_k=1)
        relations.append({
            "pair": [s, t],
            "top": [top[0].get("src_id"), top[0].get("tgt_id")] if top else None,
        })
    return {
        "entity": hits[0].get("entity_name") if hits else None,
        "relations": relations,
    }


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
