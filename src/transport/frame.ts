/**
 * The TCP peer transport's framing: an 8-byte header (magic, version, frame type,
 * payload length), then the payload. The magic and version make a stray connection
 * (an HTTP/2 client, a port scanner, a newer node) fail on its first bytes instead of
 * being read as lengths; the length is checked against a bound before anything is
 * buffered, so one peer cannot make this node allocate more than that.
 */
export const FRAME_HEADER_BYTES = 8;
const MAGIC = 0xd1_3d;
const VERSION = 1;

export const FrameType = {
  /** First frame of every connection: msgpack { from, to }. */
  hello: 1,
  /** A msgpack array of peer messages. */
  batch: 2,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export interface Frame {
  readonly type: FrameType;
  readonly payload: Buffer;
}

/** Header and payload in one buffer, so a frame is one write. */
export function encodeFrame(type: FrameType, payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt16BE(MAGIC, 0);
  frame.writeUInt8(VERSION, 2);
  frame.writeUInt8(type, 3);
  frame.writeUInt32BE(payload.length, 4);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * Cuts a byte stream into frames. After a problem (bad header, frame too big) the
 * stream cannot be resynchronised: the caller closes the connection.
 */
export class FrameReader {
  /** Bytes of an unfinished frame, kept apart until it is whole (no copy per chunk). */
  private chunks: Buffer[] = [];
  private bytes = 0;
  /** What must have arrived before a frame (or at least a header) can be read. */
  private bytesNeeded = FRAME_HEADER_BYTES;

  constructor(private readonly frameBytesMax: number) {}

  /** Bytes of a frame (or header) begun but not yet whole; 0 between frames. */
  get bufferedBytes(): number {
    return this.bytes;
  }

  /** Calls onFrame for each whole frame in what has arrived; returns a problem, or null. */
  push(chunk: Buffer, onFrame: (frame: Frame) => void): string | null {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes < this.bytesNeeded) return null;
    let data = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.bytes);
    this.bytesNeeded = FRAME_HEADER_BYTES;
    while (data.length >= FRAME_HEADER_BYTES) {
      const problem = this.headerProblem(data);
      if (problem !== null) return problem;
      const end = FRAME_HEADER_BYTES + data.readUInt32BE(4);
      if (data.length < end) {
        this.bytesNeeded = end;
        break;
      }
      const type = data.readUInt8(3) as FrameType;
      // A view, not a copy: the handler decodes it before returning.
      onFrame({ type, payload: data.subarray(FRAME_HEADER_BYTES, end) });
      data = data.subarray(end);
    }
    this.chunks = data.length === 0 ? [] : [data];
    this.bytes = data.length;
    return null;
  }

  private headerProblem(data: Buffer): string | null {
    const magic = data.readUInt16BE(0);
    if (magic !== MAGIC) {
      return `not a dlm peer frame (magic 0x${magic.toString(16)}, expected 0x${MAGIC.toString(16)})`;
    }
    const version = data.readUInt8(2);
    if (version !== VERSION) return `frame version ${version}, this node speaks ${VERSION}`;
    const type = data.readUInt8(3);
    if (type !== FrameType.hello && type !== FrameType.batch) return `unknown frame type ${type}`;
    const length = data.readUInt32BE(4);
    if (length > this.frameBytesMax) {
      return `frame of ${length} bytes exceeds runtime.peerFrameBytesMax (${this.frameBytesMax})`;
    }
    return null;
  }
}
