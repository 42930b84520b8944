//! How a message body is kept in the queue file (schema version 2).
//!
//! A body of [`COMPRESS_FROM`] bytes or more is stored as a blob: one format
//! byte ([`LZ4`]), the body's length (u32, little-endian), then the body
//! compressed as one LZ4 block. A Jira issue webhook of 12.3 KB becomes about
//! 3.3 KB, so its row fits one 4 KB page instead of a leaf and three overflow
//! pages, and each accepted webhook writes a quarter of the bytes to the log
//! and again to the database at the checkpoint. Shorter bodies, and bodies
//! LZ4 does not make shorter, stay text, as every body of schema version 1
//! did; both are read back the same way, so a version 1 file needs no
//! rewrite. The sender compresses (on its own thread, before its write joins
//! the group commit), so the committer only copies the smaller bytes.

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};

/// Bodies shorter than this are stored as text: a few hundred bytes share a
/// page with other rows anyway.
const COMPRESS_FROM: usize = 512;
/// The format byte of an LZ4-compressed body.
const LZ4: u8 = 1;
/// The largest body a stored length may claim (a damaged length must not
/// make a receive allocate gigabytes). Intake bodies are far below it.
const MAX_BODY: usize = 64 << 20;

/// A body as it is written.
pub(super) enum Stored {
    Text(String),
    Packed(Vec<u8>),
}

impl Stored {
    pub(super) fn pack(body: String) -> Self {
        if body.len() < COMPRESS_FROM || body.len() > MAX_BODY {
            return Stored::Text(body);
        }
        // At most MAX_BODY, so it fits.
        let len = body.len() as u32;
        let max = lz4_flex::block::get_maximum_output_size(body.len());
        let mut out = vec![0u8; 5 + max];
        out[0] = LZ4;
        out[1..5].copy_from_slice(&len.to_le_bytes());
        match lz4_flex::block::compress_into(body.as_bytes(), &mut out[5..]) {
            Ok(n) if 5 + n < body.len() => {
                out.truncate(5 + n);
                Stored::Packed(out)
            }
            // Incompressible (or, impossibly, the bound too small): as text.
            _ => Stored::Text(body),
        }
    }
}

impl ToSql for Stored {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Stored::Text(s) => ToSqlOutput::from(s.as_str()),
            Stored::Packed(b) => ToSqlOutput::from(b.as_slice()),
        })
    }
}

/// A body as it is read (text as it is, a blob unpacked), or why it
/// cannot be.
pub(super) fn read(v: ValueRef<'_>) -> Result<String, String> {
    let text = match v {
        ValueRef::Text(t) => t.to_vec(),
        ValueRef::Blob(b) => unpack(b)?,
        _ => return Err("stored body is neither text nor a blob".to_owned()),
    };
    String::from_utf8(text).map_err(|e| format!("stored body is not UTF-8: {e}"))
}

fn unpack(b: &[u8]) -> Result<Vec<u8>, String> {
    let Some((&LZ4, rest)) = b.split_first() else {
        return Err(format!(
            "stored body of unknown format {:?} (written by a newer jira-relay?)",
            b.first()
        ));
    };
    let (len, block) = rest
        .split_first_chunk::<4>()
        .ok_or("stored body too short for its length")?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > MAX_BODY {
        return Err(format!(
            "stored body claims {len} bytes, more than {MAX_BODY}"
        ));
    }
    let mut out = vec![0u8; len];
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(n) if n == len => Ok(out),
        Ok(n) => Err(format!("stored body unpacked to {n} bytes, not {len}")),
        Err(e) => Err(format!("stored body does not unpack: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(body: &str) -> (bool, String) {
        let stored = Stored::pack(body.to_owned());
        let packed = matches!(stored, Stored::Packed(_));
        let value = stored.to_sql().unwrap();
        let back = match &value {
            ToSqlOutput::Borrowed(v) => read(*v).unwrap(),
            _ => unreachable!("pack borrows"),
        };
        (packed, back)
    }

    #[test]
    fn long_bodies_are_packed_and_come_back_whole() {
        let body = format!(
            "{{\"webhookEvent\":\"jira:issue_created\",\"issue\":{{\"fields\":{{\"summary\":\"é ünïcode\",\"d\":\"{}\"}}}}}}",
            "lorem ipsum dolor ".repeat(100)
        );
        let (packed, back) = round_trip(&body);
        assert!(packed);
        assert_eq!(back, body);
        let Stored::Packed(b) = Stored::pack(body.clone()) else {
            unreachable!()
        };
        assert!(b.len() * 4 < body.len(), "{} of {}", b.len(), body.len());
    }

    #[test]
    fn short_and_incompressible_bodies_stay_text() {
        assert_eq!(round_trip("{\"a\":1}"), (false, "{\"a\":1}".to_owned()));
        // 600 random hex digits: too few repeats for LZ4 to shorten them.
        let noise = crate::support::random::hex(300);
        let (packed, back) = round_trip(&noise);
        assert!(!packed);
        assert_eq!(back, noise);
    }

    #[test]
    fn damaged_blobs_are_errors_not_panics() {
        let Stored::Packed(good) = Stored::pack("x".repeat(2000)) else {
            unreachable!()
        };
        let mut unknown = good.clone();
        unknown[0] = 9;
        let mut huge = good.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut short_len = good.clone();
        short_len[1..5].copy_from_slice(&1999u32.to_le_bytes());
        for (bad, says) in [
            (&[][..], "unknown format"),
            (&unknown[..], "unknown format"),
            (&good[..3], "too short"),
            (&huge[..], "claims"),
            (&short_len[..], "unpack"),
            (&good[..good.len() - 2], "unpack"),
        ] {
            let e = read(ValueRef::Blob(bad)).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
