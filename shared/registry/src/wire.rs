//! The registries' wire formats: which schema a value names, and its payload.
//!
//! - Confluent: `0x00`, the schema id as 4 bytes big-endian, then the
//!   payload (Avro binary, JSON text, or — for Protobuf — the message-index
//!   varints followed by the message).
//! - AWS Glue: `0x03`, a compression byte (`0x00` none, `0x05` zlib), the
//!   schema version id as 16 bytes (a UUID), then the payload (Avro binary
//!   or JSON text), compressed as the second byte says.

use std::borrow::Cow;
use std::io::Read;

use crate::error::RegistryError;

pub const CONFLUENT_MAGIC: u8 = 0x00;
pub const GLUE_MAGIC: u8 = 0x03;
const GLUE_UNCOMPRESSED: u8 = 0x00;
const GLUE_ZLIB: u8 = 0x05;

/// A decompressed payload larger than this is refused (a zlib bomb must not
/// exhaust the function's memory); the record size limit applies to the
/// decoded JSON afterwards.
pub const MAX_DECOMPRESSED_BYTES: u64 = 16 * 1024 * 1024;

/// Which registry, and which schema in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchemaKey {
    /// A Confluent schema id.
    Confluent(u32),
    /// A Glue schema version id (a UUID, lowercase and hyphenated).
    Glue(String),
}

impl SchemaKey {
    /// The id as written in files, logs and `schemaId` metadata.
    pub fn id(&self) -> String {
        match self {
            SchemaKey::Confluent(id) => id.to_string(),
            SchemaKey::Glue(uuid) => uuid.clone(),
        }
    }
}

/// A framed value: the schema it names and the payload after the framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed<'a> {
    pub key: SchemaKey,
    pub payload: Cow<'a, [u8]>,
}

/// Whether `value` looks like a registry-framed value at all: a Confluent
/// magic byte with room for its id, or a Glue header with a known
/// compression byte. Log text never starts with these bytes (a leading NUL
/// could not be stored anyway).
pub fn is_framed(value: &[u8]) -> bool {
    match value {
        [CONFLUENT_MAGIC, _, _, _, _, ..] => true,
        [GLUE_MAGIC, GLUE_UNCOMPRESSED | GLUE_ZLIB, rest @ ..] => rest.len() >= 16,
        _ => false,
    }
}

/// Splits a framed value. A value that is not framed, or is cut short, is a
/// [`RegistryError::Decode`].
pub fn unframe(value: &[u8]) -> Result<Framed<'_>, RegistryError> {
    match value.first() {
        Some(&CONFLUENT_MAGIC) => {
            let Some((id, payload)) = value[1..].split_first_chunk::<4>() else {
                return Err(RegistryError::decode(format!(
                    "Confluent framing needs 5 bytes (magic byte and schema id), the value has {}",
                    value.len()
                )));
            };
            Ok(Framed {
                key: SchemaKey::Confluent(u32::from_be_bytes(*id)),
                payload: Cow::Borrowed(payload),
            })
        }
        Some(&GLUE_MAGIC) => {
            let Some((&compression, rest)) = value[1..].split_first() else {
                return Err(RegistryError::decode(
                    "Glue framing without a compression byte",
                ));
            };
            let Some((uuid, payload)) = rest.split_first_chunk::<16>() else {
                return Err(RegistryError::decode(format!(
                    "Glue framing needs 18 bytes (header, compression byte, schema version id), the value has {}",
                    value.len()
                )));
            };
            let payload = match compression {
                GLUE_UNCOMPRESSED => Cow::Borrowed(payload),
                GLUE_ZLIB => Cow::Owned(inflate(payload)?),
                other => {
                    return Err(RegistryError::decode(format!(
                        "Glue compression byte 0x{other:02x} is unknown (0x00 none, 0x05 zlib)"
                    )));
                }
            };
            Ok(Framed {
                key: SchemaKey::Glue(format_uuid(uuid)),
                payload,
            })
        }
        Some(other) => Err(RegistryError::decode(format!(
            "magic byte 0x{other:02x} is neither Confluent (0x00) nor Glue (0x03)"
        ))),
        None => Err(RegistryError::decode("the value is empty")),
    }
}

fn inflate(compressed: &[u8]) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| RegistryError::decode(format!("zlib payload cannot be inflated: {e}")))?;
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(RegistryError::decode(format!(
            "zlib payload inflates to more than {MAX_DECOMPRESSED_BYTES} bytes"
        )));
    }
    Ok(out)
}

/// 16 bytes → `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `xxxxxxxx-xxxx-…` → 16 bytes; `None` when it is not a UUID.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Reads Confluent's Protobuf message indexes from the front of `payload`:
/// a zigzag varint count, then that many zigzag varint indexes (the path
/// to the message type: top-level index, then nested). The single byte `0`
/// is the shortcut for `[0]`, the first message. Returns the indexes and
/// the message bytes.
pub fn message_indexes(payload: &[u8]) -> Result<(Vec<usize>, &[u8]), RegistryError> {
    let mut rest = payload;
    let count = read_zigzag(&mut rest)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    if count < 0 || count as usize > rest.len() {
        return Err(RegistryError::decode(format!(
            "Protobuf message-index count {count} does not fit the payload"
        )));
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let index = read_zigzag(&mut rest)?;
        if index < 0 {
            return Err(RegistryError::decode(format!(
                "Protobuf message index {index} is negative"
            )));
        }
        indexes.push(index as usize);
    }
    Ok((indexes, rest))
}

fn read_zigzag(input: &mut &[u8]) -> Result<i64, RegistryError> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let Some((&byte, rest)) = input.split_first() else {
            return Err(RegistryError::decode(
                "Protobuf message indexes are cut short",
            ));
        };
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(RegistryError::decode(
        "Protobuf message-index varint is too long",
    ))
}

/// Writes message indexes as Confluent serializers do (for tests and the
/// generator): `[0]` as the single byte `0`.
pub fn encode_message_indexes(indexes: &[usize]) -> Vec<u8> {
    if indexes == [0] {
        return vec![0];
    }
    let mut out = Vec::new();
    for v in std::iter::once(indexes.len()).chain(indexes.iter().copied()) {
        let mut z = (v as u64) << 1;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn confluent_framing_names_the_id_and_keeps_the_payload() {
        let f = unframe(&[0, 0, 0, 1, 0x2c, b'x']).unwrap();
        assert_eq!(f.key, SchemaKey::Confluent(300));
        assert_eq!(&*f.payload, b"x");
        assert!(is_framed(&[0, 0, 0, 0, 1]));
    }

    #[test]
    fn truncated_framing_is_a_decode_error() {
        for v in [&[0u8, 0, 0][..], &[3, 0, 1, 2], &[3]] {
            let e = unframe(v).unwrap_err();
            assert_eq!(e.class(), "schema_decode_failed", "{v:?}");
            assert!(!e.is_transient());
        }
        assert!(!is_framed(&[0, 0, 0]));
        assert!(!is_framed(&[3, 0, 1]));
    }

    #[test]
    fn wrong_magic_is_refused_and_not_taken_as_framed() {
        assert!(!is_framed(b"{\"message\":\"m\"}"));
        assert!(!is_framed(&[
            3, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]));
        let e = unframe(&[7, 0, 0, 0, 1]).unwrap_err();
        assert!(e.to_string().contains("0x07"), "{e}");
        let mut glue = vec![3, 9];
        glue.extend([0u8; 16]);
        assert!(
            unframe(&glue)
                .unwrap_err()
                .to_string()
                .contains("compression")
        );
    }

    #[test]
    fn glue_framing_plain_and_zlib() {
        let uuid = parse_uuid("b7b4a7f0-9c5b-4d1a-8f3e-0123456789ab").unwrap();
        let mut plain = vec![3, 0];
        plain.extend(uuid);
        plain.extend(b"{\"a\":1}");
        let f = unframe(&plain).unwrap();
        assert_eq!(
            f.key,
            SchemaKey::Glue("b7b4a7f0-9c5b-4d1a-8f3e-0123456789ab".into())
        );
        assert_eq!(&*f.payload, b"{\"a\":1}");

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"{\"a\":1}").unwrap();
        let mut zipped = vec![3, 5];
        zipped.extend(uuid);
        zipped.extend(z.finish().unwrap());
        assert_eq!(&*unframe(&zipped).unwrap().payload, b"{\"a\":1}");

        let mut broken = vec![3, 5];
        broken.extend(uuid);
        broken.extend(b"not zlib");
        assert_eq!(
            unframe(&broken).unwrap_err().class(),
            "schema_decode_failed"
        );
    }

    #[test]
    fn uuids_round_trip_and_junk_is_not_one() {
        let text = "00112233-4455-6677-8899-aabbccddeeff";
        assert_eq!(format_uuid(&parse_uuid(text).unwrap()), text);
        assert!(parse_uuid("0011223344556677").is_none());
        assert!(parse_uuid("zz112233-4455-6677-8899-aabbccddeeff").is_none());
    }

    #[test]
    fn message_indexes_with_the_zero_shortcut_and_paths() {
        assert_eq!(message_indexes(&[0, 9]).unwrap(), (vec![0], &[9u8][..]));
        // [1, 2]: count 2 → 4, then 1 → 2, 2 → 4
        assert_eq!(encode_message_indexes(&[1, 2]), vec![4, 2, 4]);
        assert_eq!(
            message_indexes(&[4, 2, 4, 7]).unwrap(),
            (vec![1, 2], &[7u8][..])
        );
        assert_eq!(encode_message_indexes(&[0]), vec![0]);
        let big = encode_message_indexes(&[200]);
        assert_eq!(message_indexes(&big).unwrap().0, vec![200]);
        assert!(message_indexes(&[]).is_err());
        assert!(message_indexes(&[4, 2]).is_err());
        // a negative count (zigzag 1 → -1)
        assert!(message_indexes(&[1, 0]).is_err());
        assert!(message_indexes(&[0xff; 12]).is_err());
    }
}
