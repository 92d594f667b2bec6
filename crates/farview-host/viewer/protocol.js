// Farview's protocol as a browser device speaks it over WebTransport: the control stream carries
// the same messages as the native transport, JSON-encoded (serde's externally tagged enums), in
// the same length-delimited frames (4-byte big-endian length, then the payload). Media streams are
// binary and identical on both transports: one unidirectional stream per group of pictures, a
// 14-byte header ("FVMS", version, group), then frame records (u32 record length, u16 header
// length, the frame header, the H.264 Annex-B access unit). See docs/protocol.md.

export const PROTOCOL_VERSION = 6;
const MAX_CONTROL_MESSAGE = 1024 * 1024;
const MAX_FRAME_RECORD = 16 * 1024 * 1024;

/** Encodes one control message as a length-delimited JSON frame. */
export function encodeMessage(seq, request) {
  const payload = new TextEncoder().encode(JSON.stringify({ seq, request }));
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, 4);
  return out;
}

/** Reassembles length-delimited frames from a byte stream. Chunks are kept as they arrive
 * and copied once, into the frame that needs them (a large keyframe in many small chunks costs
 * its size, not its size times the number of chunks). */
export class FrameReader {
  constructor(reader, max) {
    this.reader = reader;
    this.max = max;
    this.chunks = [];
    this.length = 0;
  }

  async fill(n) {
    while (this.length < n) {
      const { value, done } = await this.reader.read();
      if (done) return false;
      if (value.length === 0) continue;
      this.chunks.push(value);
      this.length += value.length;
    }
    return true;
  }

  take(n) {
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const chunk = this.chunks[0];
      const used = Math.min(chunk.length, n - at);
      out.set(chunk.subarray(0, used), at);
      at += used;
      if (used === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(used);
    }
    this.length -= n;
    return out;
  }

  /** The next `n` bytes, or null at the end of the stream. */
  async exactly(n) {
    return (await this.fill(n)) ? this.take(n) : null;
  }

  /** The next length-delimited payload, or null at the end of the stream. */
  async frame() {
    const head = await this.exactly(4);
    if (!head) return null;
    const len = new DataView(head.buffer).getUint32(0);
    if (len > this.max) throw new Error(`frame of ${len} bytes exceeds ${this.max}`);
    return this.exactly(len);
  }
}

/** Reads the host's control messages (decoded JSON objects) from the control stream. */
export async function* controlMessages(readable) {
  const frames = new FrameReader(readable.getReader(), MAX_CONTROL_MESSAGE);
  for (;;) {
    const payload = await frames.frame();
    if (!payload) return;
    yield JSON.parse(new TextDecoder().decode(payload));
  }
}

/** Reads one media stream: yields `{ header, data }` per frame record. */
export async function* mediaFrames(readable) {
  const frames = new FrameReader(readable.getReader(), MAX_FRAME_RECORD);
  const head = await frames.exactly(14);
  if (!head) return;
  const magic = new TextDecoder().decode(head.slice(0, 4));
  if (magic !== 'FVMS') throw new Error('media stream does not start with FVMS');
  for (;;) {
    const record = await frames.frame();
    if (!record) return;
    const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
    const headerLen = view.getUint16(0);
    if (headerLen < 61 || 2 + headerLen > record.length) throw new Error('bad frame header');
    yield { header: parseFrameHeader(new DataView(record.buffer, record.byteOffset + 2, headerLen)), data: record.subarray(2 + headerLen) };
  }
}

function u64(view, at) {
  return Number(view.getBigUint64(at));
}

/** The fixed-layout frame header (crates/farview-protocol/src/media.rs). */
export function parseFrameHeader(v) {
  return {
    frameNumber: u64(v, 0),
    group: u64(v, 8),
    lastCommandSeq: u64(v, 16),
    renderStartUs: u64(v, 24),
    renderEndUs: u64(v, 32),
    encodeEndUs: u64(v, 40),
    sendUs: u64(v, 48),
    width: v.getUint16(56),
    height: v.getUint16(58),
    keyframe: (v.getUint8(60) & 1) !== 0,
  };
}

/** The WebCodecs codec string ("avc1.PPCCLL") of an Annex-B access unit's SPS, or null. */
export function avcCodecString(data) {
  for (let i = 0; i + 4 < data.length; i++) {
    const three = data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1;
    if (!three) continue;
    const nal = i + 3;
    if ((data[nal] & 0x1f) === 7 && nal + 3 < data.length) {
      const hex = (b) => b.toString(16).padStart(2, '0');
      return `avc1.${hex(data[nal + 1])}${hex(data[nal + 2])}${hex(data[nal + 3])}`;
    }
  }
  return null;
}

/** A reply's `{ seq, ok, err }`, or an event's `{ event }`. */
export function classify(msg) {
  if (msg.Reply) {
    const { seq, result } = msg.Reply;
    return 'Ok' in result ? { seq, ok: result.Ok } : { seq, err: result.Err };
  }
  return { event: msg.Event };
}

// Orbit camera: yaw and pitch around a target. The camera looks down its local -Z (glTF), so
// its rotation is yaw about +Y, then pitch about +X, negated.
export function orbitPose(o, aspect) {
  const cp = Math.cos(o.pitch), sp = Math.sin(o.pitch);
  const sy = Math.sin(o.yaw), cy = Math.cos(o.yaw);
  const position = [
    o.target[0] + o.distance * cp * sy,
    o.target[1] + o.distance * sp,
    o.target[2] + o.distance * cp * cy,
  ];
  const a = Math.sin(-o.pitch / 2), d = Math.cos(-o.pitch / 2);
  const b = Math.sin(o.yaw / 2), c = Math.cos(o.yaw / 2);
  const rotation = [c * a, b * d, -b * a, c * d];
  const near = Math.max(o.distance * 0.01, 1e-4);
  return { position, rotation, fov_y: o.fovY, near, far: o.distance * 20 + o.radius * 4 };
}

/** Rotates `v` by the unit quaternion `q` (x, y, z, w). */
export function rotate(q, v) {
  const [x, y, z, w] = q;
  const tx = 2 * (y * v[2] - z * v[1]);
  const ty = 2 * (z * v[0] - x * v[2]);
  const tz = 2 * (x * v[1] - y * v[0]);
  return [
    v[0] + w * tx + (y * tz - z * ty),
    v[1] + w * ty + (z * tx - x * tz),
    v[2] + w * tz + (x * ty - y * tx),
  ];
}

/** The world ray through a pixel (normalized device coordinates, y up) of a camera pose. */
export function pickRay(pose, ndcX, ndcY, aspect) {
  const t = Math.tan(pose.fov_y / 2);
  const dir = rotate(pose.rotation, [ndcX * t * aspect, ndcY * t, -1]);
  const len = Math.hypot(dir[0], dir[1], dir[2]);
  return { origin: pose.position, direction: dir.map((c) => c / len) };
}

/** Turns hex into bytes (certificate hashes). */
export function hexBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
