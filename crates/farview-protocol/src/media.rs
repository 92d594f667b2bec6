//! Media streams: one QUIC unidirectional stream per group of pictures, each a
//! [`MediaStreamHeader`] then frame records. Fixed-layout, big-endian binary rather than a
//! serializer so a browser or native client can parse a frame header with a `DataView` in a
//! handful of lines, and so the per-frame cost is a 70-byte copy.

use crate::{MAX_FRAME_RECORD, ProtocolError};

/// Starts every media stream: magic `FVMS`, version, group number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaStreamHeader {
    /// Media format version (1).
    pub version: u16,
    /// Group number: increases by one per stream; a group starts with an IDR frame.
    pub group: u64,
}

impl MediaStreamHeader {
    /// Magic bytes opening a media stream.
    pub const MAGIC: [u8; 4] = *b"FVMS";
    /// Encoded size in bytes.
    pub const LEN: usize = 14;

    /// Encodes the header.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..4].copy_from_slice(&Self::MAGIC);
        b[4..6].copy_from_slice(&self.version.to_be_bytes());
        b[6..14].copy_from_slice(&self.group.to_be_bytes());
        b
    }

    /// Decodes the header from exactly [`Self::LEN`] bytes.
    pub fn decode(b: &[u8]) -> Result<Self, ProtocolError> {
        let b: &[u8; Self::LEN] = b.try_into().map_err(|_| {
            ProtocolError::Malformed(format!("media header must be {} bytes", Self::LEN))
        })?;
        if b[..4] != Self::MAGIC {
            return Err(ProtocolError::Malformed(
                "media stream does not start with FVMS".into(),
            ));
        }
        Ok(Self {
            version: u16::from_be_bytes([b[4], b[5]]),
            group: be_u64(&b[6..14]),
        })
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Per-frame metadata. Timestamps are the host's wall clock in microseconds since the Unix epoch,
/// so a device on a synchronized clock (or on loopback) can measure each stage's latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameHeader {
    /// Frame number, counting every rendered frame (gaps mean frames were dropped).
    pub frame_number: u64,
    /// The group (media stream) carrying the frame.
    pub group: u64,
    /// Sequence number of the last control request applied before rendering this frame.
    pub last_command_seq: u64,
    /// When rendering started.
    pub render_start_us: u64,
    /// When the rendered pixels were back in host memory (render + readback done).
    pub render_end_us: u64,
    /// When the encoder produced the access unit.
    pub encode_end_us: u64,
    /// When the host started writing the frame to the stream.
    pub send_us: u64,
    /// Frame width in pixels.
    pub width: u16,
    /// Frame height in pixels.
    pub height: u16,
    /// True when the access unit is an IDR (decoding can start here).
    pub keyframe: bool,
    /// The animation time shown (version 5 hosts, header bytes 64..80): the root entity of the
    /// animated model and its animation's time in microseconds, for the lowest-numbered root
    /// with an animation set; `None` when nothing is animated (or from older hosts).
    pub animation: Option<FrameAnimation>,
    /// The detail the frame was drawn at (version 6 hosts, header bytes 80..88); `None` from
    /// older hosts.
    pub detail: Option<FrameDetail>,
}

/// The detail a frame was drawn at: the level-of-detail error budget the host's frame-time
/// budget chose (raised when frames run late), and the triangles drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDetail {
    /// Largest projected error of a level of detail, thousandths of a pixel (0: full detail).
    pub lod_error_millipx: u32,
    /// Triangles drawn (saturating at `u32::MAX`).
    pub triangles: u32,
}

/// Which animation time a frame shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameAnimation {
    /// The model's root entity.
    pub root: u64,
    /// The animation's time, microseconds.
    pub time_us: u64,
}

impl FrameHeader {
    /// Encoded size of the header this crate writes: the 64 bytes of version 1, then the
    /// animation shown (root, time; both `u64::MAX` for none), then the detail (error budget,
    /// triangles; both `u32::MAX` for none).
    pub const LEN: usize = 88;
    /// Where the animation fields start.
    const ANIMATION_AT: usize = 64;
    /// Where the detail fields start.
    const DETAIL_AT: usize = 80;
    /// Fewest header bytes a version-1 reader needs; later versions may send more.
    const MIN_LEN: usize = 61;
    const FLAG_KEYFRAME: u8 = 1;

    /// Encodes the header (88 bytes).
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        let words = [
            self.frame_number,
            self.group,
            self.last_command_seq,
            self.render_start_us,
            self.render_end_us,
            self.encode_end_us,
            self.send_us,
        ];
        for (chunk, w) in b.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        b[56..58].copy_from_slice(&self.width.to_be_bytes());
        b[58..60].copy_from_slice(&self.height.to_be_bytes());
        b[60] = if self.keyframe {
            Self::FLAG_KEYFRAME
        } else {
            0
        };
        let (root, time) = self
            .animation
            .map_or((u64::MAX, u64::MAX), |a| (a.root, a.time_us));
        let at = Self::ANIMATION_AT;
        b[at..at + 8].copy_from_slice(&root.to_be_bytes());
        b[at + 8..at + 16].copy_from_slice(&time.to_be_bytes());
        let (error, triangles) = self
            .detail
            .map_or((u32::MAX, u32::MAX), |d| (d.lod_error_millipx, d.triangles));
        let at = Self::DETAIL_AT;
        b[at..at + 4].copy_from_slice(&error.to_be_bytes());
        b[at + 4..at + 8].copy_from_slice(&triangles.to_be_bytes());
        b
    }

    /// Decodes a header of at least 61 bytes; the animation fields when the header has them
    /// (extra trailing bytes from newer hosts are ignored).
    pub fn decode(b: &[u8]) -> Result<Self, ProtocolError> {
        if b.len() < Self::MIN_LEN {
            return Err(ProtocolError::Malformed(format!(
                "frame header of {} bytes is too short",
                b.len()
            )));
        }
        Ok(Self {
            frame_number: be_u64(&b[0..]),
            group: be_u64(&b[8..]),
            last_command_seq: be_u64(&b[16..]),
            render_start_us: be_u64(&b[24..]),
            render_end_us: be_u64(&b[32..]),
            encode_end_us: be_u64(&b[40..]),
            send_us: be_u64(&b[48..]),
            width: u16::from_be_bytes([b[56], b[57]]),
            height: u16::from_be_bytes([b[58], b[59]]),
            keyframe: b[60] & Self::FLAG_KEYFRAME != 0,
            animation: b
                .get(Self::ANIMATION_AT..Self::ANIMATION_AT + 16)
                .map(|a| (be_u64(a), be_u64(&a[8..])))
                .filter(|&(root, time)| root != u64::MAX && time != u64::MAX)
                .map(|(root, time_us)| FrameAnimation { root, time_us }),
            detail: b
                .get(Self::DETAIL_AT..Self::DETAIL_AT + 8)
                .map(|d| {
                    (
                        u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
                        u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
                    )
                })
                .filter(|&(e, t)| e != u32::MAX || t != u32::MAX)
                .map(|(lod_error_millipx, triangles)| FrameDetail {
                    lod_error_millipx,
                    triangles,
                }),
        })
    }

    /// The bytes that precede the payload in a frame record: record length (u32), header length
    /// (u16), header. Write these, then the payload, without copying the payload.
    pub fn record_prefix(&self, payload_len: usize) -> Result<[u8; 6 + Self::LEN], ProtocolError> {
        let record_len = 2 + Self::LEN + payload_len;
        if record_len > MAX_FRAME_RECORD {
            return Err(ProtocolError::TooLarge {
                len: record_len,
                max: MAX_FRAME_RECORD,
            });
        }
        let mut b = [0u8; 6 + Self::LEN];
        b[..4].copy_from_slice(&(record_len as u32).to_be_bytes());
        b[4..6].copy_from_slice(&(Self::LEN as u16).to_be_bytes());
        b[6..].copy_from_slice(&self.encode());
        Ok(b)
    }
}

/// A decoded frame record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRecord {
    /// Metadata.
    pub header: FrameHeader,
    /// H.264 Annex-B access unit.
    pub payload: Vec<u8>,
}

impl FrameRecord {
    /// Encodes a whole record (length prefix included).
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let prefix = self.header.record_prefix(self.payload.len())?;
        let mut out = Vec::with_capacity(prefix.len() + self.payload.len());
        out.extend_from_slice(&prefix);
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    /// Checks a record length read from the stream before the record is buffered.
    pub fn check_len(record_len: u32) -> Result<usize, ProtocolError> {
        let len = record_len as usize;
        if len > MAX_FRAME_RECORD {
            return Err(ProtocolError::TooLarge {
                len,
                max: MAX_FRAME_RECORD,
            });
        }
        if len < 2 + FrameHeader::MIN_LEN {
            return Err(ProtocolError::Malformed(format!(
                "frame record of {len} bytes is too short"
            )));
        }
        Ok(len)
    }

    /// Decodes a record's body: the bytes after its 4-byte length.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let hl = body
            .get(..2)
            .ok_or_else(|| ProtocolError::Malformed("frame record has no header length".into()))?;
        let header_len = u16::from_be_bytes([hl[0], hl[1]]) as usize;
        let header_bytes = body.get(2..2 + header_len).ok_or_else(|| {
            ProtocolError::Malformed(format!(
                "frame header length {header_len} exceeds the record"
            ))
        })?;
        let header = FrameHeader::decode(header_bytes)?;
        Ok(Self {
            header,
            payload: body[2 + header_len..].to_vec(),
        })
    }
}
