//! Rows in PostgreSQL's binary COPY format, encoded by hand.
//!
//! `BinaryCopyInWriter` encodes each value through `ToSql` one at a time; the
//! rows here have a fixed shape, so writing the bytes straight into one buffer
//! is far cheaper (rust-postgres#1114 measured ~15x) and needs no type oids.

use bytes::{BufMut, BytesMut};

use crate::records::Embedded;
use crate::settings::PgType;

const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Largest finite float16 value; halfvec cannot hold more.
const HALF_MAX: f32 = 65504.0;

/// The columns a COPY fills: the staging table's (every field of either
/// layout), or straight into a vecload table (`DIRECT_COLUMNS`, plus `page`
/// when the table has it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    Staging,
    Direct { page: bool, bucket: bool },
}

pub const DIRECT_COLUMNS: &str =
    "tenant_id, id, doc_id, source, chunk_index, content, content_hash, embedding";

pub fn encode(rows: &[Embedded], ty: PgType, cols: Columns) -> Result<BytesMut, String> {
    let per_value = match ty {
        PgType::Vector => 4,
        PgType::Halfvec => 2,
    };
    let approx: usize = rows
        .iter()
        .map(|r| {
            128 + r.chunk.text.len() + r.chunk.doc.source.len() + 4 + per_value * r.vector.len()
        })
        .sum();
    let mut buf = BytesMut::with_capacity(HEADER.len() + 8 + approx + 2);
    buf.put_slice(HEADER);
    buf.put_i32(0); // flags
    buf.put_i32(0); // header extension length
    for r in rows {
        let c = &r.chunk;
        match cols {
            Columns::Staging => {
                buf.put_i16(16);
                put_text(&mut buf, &c.id);
                put_text(&mut buf, &c.doc.tenant);
            }
            Columns::Direct { page, bucket } => {
                buf.put_i16(8 + i16::from(page) + i16::from(bucket));
                put_text(&mut buf, &c.doc.tenant);
                put_text(&mut buf, &c.id);
            }
        }
        put_text(&mut buf, &c.doc.doc_id);
        put_text(&mut buf, &c.doc.source);
        buf.put_i32(4);
        buf.put_i32(c.index as i32);
        put_text(&mut buf, &c.text);
        put_text(&mut buf, &c.content_hash);
        let dim = r.vector.len();
        buf.put_i32((4 + per_value * dim) as i32);
        buf.put_i16(dim as i16);
        buf.put_i16(0);
        match ty {
            PgType::Vector => {
                for v in &r.vector {
                    buf.put_f32(*v);
                }
            }
            PgType::Halfvec => {
                for v in &r.vector {
                    if v.abs() > HALF_MAX {
                        return Err(format!(
                            "chunk {} of {} has a value {v} outside halfvec's range (±{HALF_MAX}); use --pg-type vector",
                            c.index, c.doc.source
                        ));
                    }
                    buf.put_u16(half::f16::from_f32(*v).to_bits());
                }
            }
        }
        let bucket = crate::shard::bucket(&c.doc.tenant, &c.doc.file) as i32;
        if let Columns::Direct { page, bucket: b } = cols {
            if page {
                put_page(&mut buf, c.doc.page);
            }
            if b {
                buf.put_i32(4);
                buf.put_i32(bucket);
            }
            continue;
        }
        // What only LightRAG's layout stores (see shape::STAGING_COLUMNS).
        buf.put_i32(4);
        buf.put_i32(c.tokens as i32);
        let extra = c.extra.as_deref();
        put_opt(&mut buf, extra.and_then(|e| e.entity_name.as_deref()));
        put_opt(&mut buf, extra.and_then(|e| e.src_id.as_deref()));
        put_opt(&mut buf, extra.and_then(|e| e.tgt_id.as_deref()));
        put_opt(&mut buf, extra.and_then(|e| e.source_id.as_deref()));
        match extra.and_then(|e| e.created_at) {
            Some(t) => {
                buf.put_i32(8);
                buf.put_i64(t);
            }
            None => buf.put_i32(-1),
        }
        put_page(&mut buf, c.doc.page);
        buf.put_i32(4);
        buf.put_i32(bucket);
    }
    buf.put_i16(-1);
    Ok(buf)
}

fn put_page(buf: &mut BytesMut, page: Option<u32>) {
    match page {
        Some(p) => {
            buf.put_i32(4);
            buf.put_i32(p as i32);
        }
        None => buf.put_i32(-1),
    }
}

/// A text, or NULL.
fn put_opt(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_text(buf, s),
        None => buf.put_i32(-1),
    }
}

fn put_text(buf: &mut BytesMut, s: &str) {
    buf.put_i32(s.len() as i32);
    buf.put_slice(s.as_bytes());
}
