//! Where `farview stream` writes what it receives: the raw H.264 stream, an MP4 with the host's
//! frame times, PNG snapshots. Each is finished on every path (a lease that ends mid-run still
//! leaves a playable MP4).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use farview_client::Frame;
use farview_encode::nal_units;

/// The MP4 track's clock: 90 kHz, as in MPEG transport, so frame times in microseconds round
/// to within 11 µs.
const MP4_TIMESCALE: u32 = 90_000;

/// The raw Annex-B stream, as received.
pub(crate) struct AnnexB {
    path: PathBuf,
    out: BufWriter<File>,
}

impl AnnexB {
    pub(crate) fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path: path.into(),
            out: BufWriter::new(file),
        })
    }

    pub(crate) fn write(&mut self, frame: &Frame) -> anyhow::Result<()> {
        self.out
            .write_all(&frame.data)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// An MP4 (`avc1`) whose sample times are the host's render times, so it plays at the speed
/// it was streamed, gaps included.
pub(crate) struct Mp4 {
    path: PathBuf,
    writer: Option<mp4::Mp4Writer<BufWriter<File>>>,
    file: Option<BufWriter<File>>,
    /// The frame waiting for the next one: its duration is the gap to it.
    held: Option<Sample>,
    first_us: Option<u64>,
    last_duration: u32,
    fps: f32,
    samples: u64,
}

struct Sample {
    time_us: u64,
    avcc: Vec<u8>,
    sync: bool,
}

impl Mp4 {
    pub(crate) fn create(path: &Path, fps: f32) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path: path.into(),
            writer: None,
            file: Some(BufWriter::new(file)),
            held: None,
            first_us: None,
            last_duration: 0,
            fps,
            samples: 0,
        })
    }

    fn io_context(&self) -> String {
        format!("writing {}", self.path.display())
    }

    /// Starts the file at the first keyframe, whose SPS and PPS describe the track.
    fn start(&mut self, frame: &Frame) -> anyhow::Result<bool> {
        let (mut sps, mut pps) = (None, None);
        for nal in nal_units(&frame.data) {
            match nal.first().map(|b| b & 0x1f) {
                Some(7) if sps.is_none() => sps = Some(nal.to_vec()),
                Some(8) if pps.is_none() => pps = Some(nal.to_vec()),
                _ => {}
            }
        }
        let (Some(sps), Some(pps)) = (sps, pps) else {
            return Ok(false);
        };
        let Some(file) = self.file.take() else {
            return Ok(false);
        };
        let config = mp4::Mp4Config {
            major_brand: mp4::FourCC::from(*b"isom"),
            minor_version: 512,
            compatible_brands: [b"isom", b"iso2", b"avc1", b"mp41"]
                .into_iter()
                .map(|b| mp4::FourCC::from(*b))
                .collect(),
            timescale: 1000,
        };
        let mut writer = mp4::Mp4Writer::write_start(file, &config).map_err(mp4_error)?;
        writer
            .add_track(&mp4::TrackConfig {
                track_type: mp4::TrackType::Video,
                timescale: MP4_TIMESCALE,
                language: "und".into(),
                media_conf: mp4::MediaConfig::AvcConfig(mp4::AvcConfig {
                    width: frame.header.width,
                    height: frame.header.height,
                    seq_param_set: sps,
                    pic_param_set: pps,
                }),
            })
            .map_err(mp4_error)?;
        self.writer = Some(writer);
        Ok(true)
    }

    pub(crate) fn write(&mut self, frame: &Frame) -> anyhow::Result<()> {
        if self.writer.is_none() && !(frame.header.keyframe && self.start(frame)?) {
            return Ok(());
        }
        // Samples carry length-prefixed NAL units; parameter sets live in the track's `avcC`
        // and access unit delimiters have no place in MP4.
        let mut avcc = Vec::with_capacity(frame.data.len());
        for nal in nal_units(&frame.data) {
            if matches!(nal.first().map(|b| b & 0x1f), Some(7..=9)) {
                continue;
            }
            let len = u32::try_from(nal.len()).context("NAL unit over 4 GiB")?;
            avcc.extend_from_slice(&len.to_be_bytes());
            avcc.extend_from_slice(nal);
        }
        let time_us = frame.header.render_start_us;
        self.first_us.get_or_insert(time_us);
        let next = Sample {
            time_us,
            avcc,
            sync: frame.header.keyframe,
        };
        if let Some(held) = self.held.replace(next) {
            let duration = ticks(time_us.saturating_sub(held.time_us)).max(1);
            self.write_sample(held, duration)?;
        }
        Ok(())
    }

    fn write_sample(&mut self, sample: Sample, duration: u32) -> anyhow::Result<()> {
        let context = self.io_context();
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let start_time = ticks(
            sample
                .time_us
                .saturating_sub(self.first_us.unwrap_or(sample.time_us)),
        );
        writer
            .write_sample(
                1,
                &mp4::Mp4Sample {
                    start_time: u64::from(start_time),
                    duration,
                    rendering_offset: 0,
                    is_sync: sample.sync,
                    bytes: bytes::Bytes::from(sample.avcc),
                },
            )
            .map_err(mp4_error)
            .context(context)?;
        self.last_duration = duration;
        self.samples += 1;
        Ok(())
    }

    /// Writes the last frame (lasting as long as the one before it) and the index.
    pub(crate) fn finish(mut self) -> anyhow::Result<u64> {
        if let Some(last) = self.held.take() {
            let nominal = (MP4_TIMESCALE as f32 / self.fps.max(1.0)).round() as u32;
            let duration = if self.last_duration > 0 {
                self.last_duration
            } else {
                nominal.max(1)
            };
            self.write_sample(last, duration)?;
        }
        let context = self.io_context();
        if let Some(mut writer) = self.writer.take() {
            writer
                .write_end()
                .map_err(mp4_error)
                .context(context.clone())?;
            writer.into_writer().flush().context(context)?;
        }
        Ok(self.samples)
    }
}

fn ticks(us: u64) -> u32 {
    u32::try_from(us * u64::from(MP4_TIMESCALE) / 1_000_000).unwrap_or(u32::MAX)
}

/// The mp4 crate's errors wrap I/O errors: keep them as such, so the exit code says I/O.
fn mp4_error(e: mp4::Error) -> anyhow::Error {
    match e {
        mp4::Error::IoError(io) => io.into(),
        other => anyhow::anyhow!("MP4: {other}"),
    }
}

/// Every `every`-th frame as a PNG, decoded with openh264 (every frame is decoded: each
/// depends on the ones before it).
pub(crate) struct Pngs {
    dir: PathBuf,
    every: u64,
    decoder: openh264::decoder::Decoder,
    index: u64,
    pub(crate) written: u64,
}

impl Pngs {
    pub(crate) fn create(dir: &Path, every: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir: dir.into(),
            every: every.max(1),
            decoder: openh264::decoder::Decoder::new()
                .map_err(|e| anyhow::anyhow!("H.264 decoder: {e}"))?,
            index: 0,
            written: 0,
        })
    }

    pub(crate) fn write(&mut self, frame: &Frame) -> anyhow::Result<()> {
        use openh264::formats::YUVSource;
        let index = self.index;
        self.index += 1;
        let Some(yuv) = self
            .decoder
            .decode(&frame.data)
            .map_err(|e| anyhow::anyhow!("decoding frame {}: {e}", frame.header.frame_number))?
        else {
            return Ok(());
        };
        if !index.is_multiple_of(self.every) {
            return Ok(());
        }
        let (w, h) = yuv.dimensions();
        let (ys, us, vs) = yuv.strides();
        // Back to RGB with the host's own matrix (BT.709 limited range; openh264's converter
        // assumes BT.601).
        let mut i420 = farview_encode::I420Frame::new(w as u32, h as u32)
            .map_err(|e| anyhow::anyhow!("decoded frame {w}x{h}: {e}"))?;
        {
            let (y, u, v) = i420.planes_mut();
            copy_plane(yuv.y(), ys, y, w);
            copy_plane(yuv.u(), us, u, w.div_ceil(2));
            copy_plane(yuv.v(), vs, v, w.div_ceil(2));
        }
        let rgba = farview_encode::i420_to_rgba(&i420);
        let path = self.dir.join(format!("frame-{index:06}.png"));
        image::save_buffer(
            &path,
            &rgba,
            w as u32,
            h as u32,
            image::ExtendedColorType::Rgba8,
        )
        .map_err(|e| match e {
            image::ImageError::IoError(io) => anyhow::Error::new(io),
            other => anyhow::anyhow!("{other}"),
        })
        .with_context(|| format!("writing {}", path.display()))?;
        self.written += 1;
        Ok(())
    }
}

/// Copies a plane of `width`-byte rows out of a buffer with `stride`-byte rows.
fn copy_plane(src: &[u8], stride: usize, dst: &mut [u8], width: usize) {
    for (row, out) in dst.chunks_exact_mut(width).enumerate() {
        if let Some(line) = src.get(row * stride..row * stride + width) {
            out.copy_from_slice(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_are_copied_without_their_padding() {
        let src = [1, 2, 9, 9, 3, 4, 9, 9];
        let mut dst = [0u8; 4];
        copy_plane(&src, 4, &mut dst, 2);
        assert_eq!(dst, [1, 2, 3, 4]);
    }

    #[test]
    fn ticks_are_90khz() {
        assert_eq!(ticks(1_000_000), 90_000);
        assert_eq!(ticks(16_667), 1500);
    }
}
