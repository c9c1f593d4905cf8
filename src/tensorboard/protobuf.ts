// The slice of the protobuf wire format that TensorBoard events need: varints, 64-bit fixed
// (double), 32-bit fixed (float) and length-delimited fields. No groups, no zigzag, no packed
// helpers, no schema: event.ts decides which fields exist and what their defaults are.

export enum WireType {
  Varint = 0,
  Fixed64 = 1,
  LengthDelimited = 2,
  Fixed32 = 5,
}

export class ProtoDecodeError extends Error {
  /** Byte offset inside the message being decoded. */
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`${message} (at byte ${offset} of the message)`);
    this.name = 'ProtoDecodeError';
    this.offset = offset;
  }
}

const TWO_32 = 4294967296;

/** Appends fields to a growable buffer; finish() returns the encoded message. */
export class ProtoWriter {
  private buf: Buffer;
  private len = 0;

  constructor(initialCapacity = 64) {
    this.buf = Buffer.allocUnsafe(Math.max(16, initialCapacity));
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = Buffer.allocUnsafe(cap);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** Unsigned varint of a non-negative safe integer, or any int64/uint64 given as a bigint or negative number. */
  private rawVarint(value: number | bigint): void {
    if (typeof value === 'number' && value >= 0 && value < TWO_32 && Number.isInteger(value)) {
      this.reserve(5);
      let v = value;
      while (v > 0x7f) {
        this.buf[this.len++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      this.buf[this.len++] = v;
      return;
    }
    if (typeof value === 'number' && !Number.isSafeInteger(value)) {
      throw new RangeError(`varint value must be a safe integer or a bigint, got ${value}`);
    }
    // Two's complement in 64 bits: negative int64 values take 10 bytes, as in every protobuf runtime.
    let v = BigInt.asUintN(64, BigInt(value));
    this.reserve(10);
    while (v > 0x7fn) {
      this.buf[this.len++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.len++] = Number(v);
  }

  private key(field: number, wire: WireType): void {
    if (!Number.isInteger(field) || field < 1 || field > 0x1fffffff) throw new RangeError(`bad field number ${field}`);
    this.rawVarint(field * 8 + wire);
  }

  /** int32/int64/uint32/uint64/enum/bool field (varint wire type). */
  varint(field: number, value: number | bigint): this {
    this.key(field, WireType.Varint);
    this.rawVarint(value);
    return this;
  }

  /** double field (64-bit fixed). */
  double(field: number, value: number): this {
    this.key(field, WireType.Fixed64);
    this.reserve(8);
    this.buf.writeDoubleLE(value, this.len);
    this.len += 8;
    return this;
  }

  /** fixed64/sfixed64 field. */
  fixed64(field: number, value: bigint): this {
    this.key(field, WireType.Fixed64);
    this.reserve(8);
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, value), this.len);
    this.len += 8;
    return this;
  }

  /** float field (32-bit fixed); the value is rounded to float32. */
  float(field: number, value: number): this {
    this.key(field, WireType.Fixed32);
    this.reserve(4);
    this.buf.writeFloatLE(value, this.len);
    this.len += 4;
    return this;
  }

  /** fixed32 field. */
  fixed32(field: number, value: number): this {
    this.key(field, WireType.Fixed32);
    this.reserve(4);
    this.buf.writeUInt32LE(value >>> 0, this.len);
    this.len += 4;
    return this;
  }

  /** bytes field, or an already encoded embedded message. */
  bytes(field: number, value: Uint8Array): this {
    this.key(field, WireType.LengthDelimited);
    this.rawVarint(value.length);
    this.reserve(value.length);
    this.buf.set(value, this.len);
    this.len += value.length;
    return this;
  }

  /** string field, UTF-8 encoded. */
  string(field: number, value: string): this {
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  /** Embedded message built by `build` on a fresh writer. */
  message(field: number, build: (w: ProtoWriter) => void): this {
    const sub = new ProtoWriter();
    build(sub);
    return this.bytes(field, sub.finish());
  }

  get length(): number {
    return this.len;
  }

  /** The encoded bytes (a copy; the writer can keep being used). */
  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}

/** One field as read off the wire; `wire` tells which read method applies to its value. */
export interface ProtoField {
  field: number;
  wire: WireType;
  /** Offset of the field's key inside the message. */
  offset: number;
}

/** Sequential reader over one encoded message. */
export class ProtoReader {
  private pos: number;
  private readonly end: number;
  private readonly view: DataView;

  constructor(private readonly data: Uint8Array, start = 0, end = data.length) {
    this.pos = start;
    this.end = end;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  get offset(): number {
    return this.pos;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** The next field's key, or null at the end of the message. */
  next(): ProtoField | null {
    if (this.pos >= this.end) return null;
    const offset = this.pos;
    const key = this.smallVarint('field key');
    const wire = key & 7;
    const field = Math.floor(key / 8);
    if (field < 1 || field > 0x1fffffff) throw new ProtoDecodeError(`bad field number ${field}`, offset);
    if (wire !== WireType.Varint && wire !== WireType.Fixed64 && wire !== WireType.LengthDelimited && wire !== WireType.Fixed32) {
      throw new ProtoDecodeError(`unsupported wire type ${wire} for field ${field}`, offset);
    }
    return { field, wire, offset };
  }

  /** Raw unsigned 64-bit varint. */
  varint64(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ProtoDecodeError('truncated varint', this.pos);
      const b = this.data[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return BigInt.asUintN(64, result);
      shift += 7n;
    }
    throw new ProtoDecodeError('varint longer than 10 bytes', this.pos);
  }

  /** Varint as uint32 (like protobuf runtimes, keeps the low 32 bits of a longer value). */
  uint32(): number {
    return Number(BigInt.asUintN(32, this.varint64()));
  }

  /** Varint of at most 5 bytes and below 2^31: a field key or the length of a length-delimited field. */
  private smallVarint(what: string): number {
    const start = this.pos;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) throw new ProtoDecodeError(`truncated ${what}`, this.pos);
      const b = this.data[this.pos++]!;
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) {
        if (result > 0x7fffffff) break;
        return result;
      }
      mul *= 128;
    }
    throw new ProtoDecodeError(`${what} out of range`, start);
  }

  /** Varint as int32 (negative values are sign-extended 10-byte varints). */
  int32(): number {
    return Number(BigInt.asIntN(32, this.varint64()));
  }

  /** Varint as int64; throws if it does not fit a JS safe integer. */
  int64(): number {
    const start = this.pos;
    const v = BigInt.asIntN(64, this.varint64());
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new ProtoDecodeError(`int64 ${v} is outside the safe integer range`, start);
    }
    return Number(v);
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw new ProtoDecodeError(`truncated field: need ${n} bytes, have ${this.end - this.pos}`, this.pos);
  }

  double(): number {
    this.need(8);
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  fixed64(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  float(): number {
    this.need(4);
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  fixed32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A length-delimited field's payload (a view into the input, not a copy). */
  bytes(): Uint8Array {
    const len = this.smallVarint('length');
    this.need(len);
    const v = this.data.subarray(this.pos, this.pos + len);
    this.pos += len;
    return v;
  }

  string(): string {
    const b = this.bytes();
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
  }

  /** Skips the value of a field whose key was just read. */
  skip(wire: WireType): void {
    switch (wire) {
      case WireType.Varint:
        this.varint64();
        return;
      case WireType.Fixed64:
        this.need(8);
        this.pos += 8;
        return;
      case WireType.Fixed32:
        this.need(4);
        this.pos += 4;
        return;
      case WireType.LengthDelimited:
        this.bytes();
        return;
      default:
        throw new ProtoDecodeError(`unsupported wire type ${wire as number}`, this.pos);
    }
  }
}
