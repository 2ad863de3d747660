//! Checksummed records: `crc32(payload) as u32 LE` followed by the payload.

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record is {0} bytes, shorter than its 4-byte checksum")]
    Truncated(usize),
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("undecodable record: {0}")]
    Decode(#[from] serde_json::Error),
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let payload = serde_json::to_vec(value)?;
    Ok(seal(&payload))
}

pub(crate) fn seal(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

pub(crate) fn open(record: &[u8]) -> Result<&[u8], CodecError> {
    if record.len() < 4 {
        return Err(CodecError::Truncated(record.len()));
    }
    let (head, payload) = record.split_at(4);
    let stored = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    Ok(payload)
}

pub(crate) fn decode<T: DeserializeOwned>(record: &[u8]) -> Result<T, CodecError> {
    Ok(serde_json::from_slice(open(record)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_every_kind_of_damage() {
        let good = encode(&vec![1u64, 2, 3]).expect("encodes");
        assert_eq!(decode::<Vec<u64>>(&good).expect("decodes"), vec![1, 2, 3]);

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        assert!(matches!(
            decode::<Vec<u64>>(&flipped),
            Err(CodecError::Checksum { .. })
        ));
        assert!(matches!(
            decode::<Vec<u64>>(&good[..3]),
            Err(CodecError::Truncated(3))
        ));
        assert!(decode::<Vec<u64>>(&good[..good.len() - 1]).is_err());
        let not_json = seal(b"{nope");
        assert!(matches!(
            decode::<Vec<u64>>(&not_json),
            Err(CodecError::Decode(_))
        ));
    }
}
