//! The snapshot file format. A file is the magic `ECSDSNP1`, then one record per state-machine
//! row (a tag naming its column family, then the key and the value, each prefixed with its
//! length as a big-endian `u32`), then a metadata trailer record (tag `0xff`, openraft's snapshot
//! metadata as JSON), then a footer: the trailer's offset (big-endian `u64`) and `ECSDEND1`, so a
//! starting node reads the metadata without reading the file. Files without the footer (from
//! earlier versions) are read to the end to find the trailer.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use openraft::SnapshotMeta;

use super::{NodeId, NodeInfo};
use crate::storage::Cf;

/// openraft's metadata of a snapshot, as the trailer holds it.
pub type Meta = SnapshotMeta<NodeId, NodeInfo>;

const SNAPSHOT_MAGIC: &[u8; 8] = b"ECSDSNP1";
/// The file's last 16 bytes: the trailer record's offset (big-endian `u64`), then this. Files
/// without it (from earlier versions) are read to the end to find the trailer.
const FOOTER_MAGIC: &[u8; 8] = b"ECSDEND1";
const TRAILER_TAG: u8 = 0xff;

/// Writes a snapshot file: [`Writer::record`] for each row, then [`Writer::finish`].
pub struct Writer<W: Write + Seek> {
    out: W,
}

impl<W: Write + Seek> Writer<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(SNAPSHOT_MAGIC)?;
        Ok(Writer { out })
    }

    /// One row of family `cf`.
    pub fn record(&mut self, cf: Cf, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        write_record(&mut self.out, cf.tag(), key, value)
    }

    /// Writes the metadata trailer and the footer; returns the output, not yet synced.
    pub fn finish(mut self, meta: &Meta) -> std::io::Result<W> {
        let meta_json = serde_json::to_vec(meta)?;
        let trailer_at = self.out.stream_position()?;
        write_record(&mut self.out, TRAILER_TAG, b"meta", &meta_json)?;
        self.out.write_all(&trailer_at.to_be_bytes())?;
        self.out.write_all(FOOTER_MAGIC)?;
        Ok(self.out)
    }
}

fn write_record(out: &mut impl Write, tag: u8, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    out.write_all(&[tag])?;
    out.write_all(&(key.len() as u32).to_be_bytes())?;
    out.write_all(key)?;
    out.write_all(&(value.len() as u32).to_be_bytes())?;
    out.write_all(value)
}

/// Reads only a snapshot file's metadata: through its footer when it has one, so a node's start
/// does not read gigabytes.
pub fn read_meta(path: &Path) -> std::io::Result<Meta> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len >= 16 {
        let mut footer = [0u8; 16];
        file.seek(SeekFrom::Start(len - 16))?;
        file.read_exact(&mut footer)?;
        if &footer[8..] == FOOTER_MAGIC {
            let at = u64::from_be_bytes(footer[..8].try_into().expect("8 bytes"));
            if at < len - 16 {
                file.seek(SeekFrom::Start(at))?;
                let mut input = BufReader::new(file);
                let mut tag = [0u8; 1];
                input.read_exact(&mut tag)?;
                let _key = read_chunk(&mut input)?;
                let value = read_chunk(&mut input)?;
                if tag[0] == TRAILER_TAG {
                    return serde_json::from_slice(&value)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
            }
        }
    }
    read(path, |_, _, _| Ok(()))
}

/// A length-prefixed field of a snapshot record.
fn read_chunk(input: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    input.read_exact(&mut buf)?;
    Ok(buf)
}

/// Reads a snapshot file, calling `visit` for each record, and returns its metadata trailer.
pub fn read(path: &Path, mut visit: impl FnMut(Cf, &[u8], &[u8]) -> std::io::Result<()>) -> std::io::Result<Meta> {
    let bad = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("snapshot {}: {what}", path.display()),
        )
    };
    let mut input = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != SNAPSHOT_MAGIC {
        return Err(bad("not an ecsd snapshot"));
    }
    loop {
        let mut tag = [0u8; 1];
        input
            .read_exact(&mut tag)
            .map_err(|_| bad("truncated: no metadata trailer"))?;
        let key = read_chunk(&mut input)?;
        let value = read_chunk(&mut input)?;
        if tag[0] == TRAILER_TAG {
            return serde_json::from_slice(&value).map_err(|e| bad(&e.to_string()));
        }
        let cf = Cf::from_tag(tag[0])
            .filter(|cf| Cf::STATE_MACHINE.contains(cf))
            .ok_or_else(|| bad("unknown record"))?;
        visit(cf, &key, &value)?;
    }
}
