// Encoding and decoding of the TensorBoard protos we use. Field numbers follow TensorFlow's
// tensorflow/core/framework/{summary,tensor,tensor_shape,types}.proto and
// tensorflow/core/util/event.proto:
//
//   Event          { double wall_time = 1; int64 step = 2;
//                    oneof what { string file_version = 3; Summary summary = 5; ... } }
//   Summary        { repeated Value value = 1; }
//   Summary.Value  { string tag = 1; SummaryMetadata metadata = 9;
//                    oneof value { float simple_value = 2; Image image = 4; TensorProto tensor = 8; ... } }
//   Summary.Image  { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }
//   SummaryMetadata { PluginData plugin_data = 1; }   PluginData { string plugin_name = 1; bytes content = 2; }
//   TensorProto    { DataType dtype = 1; TensorShapeProto tensor_shape = 2; repeated bytes string_val = 8; }
//   TensorShapeProto { repeated Dim dim = 2; }   Dim { int64 size = 1; }
//
// Encoding follows proto3 the way the reference runtimes do it, so that our bytes are identical to
// PyTorch's: fields in field-number order, singular fields left out when they hold their default
// (0, "", empty bytes), members of a oneof written whenever they are set (simple_value 0 included).

import { ProtoReader, ProtoWriter, WireType } from './protobuf';

/** TensorFlow DataType DT_STRING (types.proto), the dtype of text summaries. */
export const DT_STRING = 7;

/** First record of every event file. */
export const FILE_VERSION = 'brain.Event:2';

export interface SummaryImage {
  height: number;
  width: number;
  /** 1 grayscale, 2 grayscale+alpha, 3 RGB, 4 RGBA. */
  colorspace: number;
  /** The encoded image (PNG). */
  encodedImage: Uint8Array;
}

export interface TensorValue {
  dtype: number;
  /** Sizes of tensor_shape's dims ([1] for a text summary). */
  shape: number[];
  /** string_val entries (DT_STRING tensors). */
  stringVal: Uint8Array[];
}

export interface PluginData {
  pluginName: string;
  content: Uint8Array;
}

export interface SummaryMetadata {
  pluginData?: PluginData;
}

export interface SummaryValue {
  tag: string;
  /** Exactly one of simpleValue / image / tensor is set in what we write; decoding leaves the others undefined. */
  simpleValue?: number;
  image?: SummaryImage;
  tensor?: TensorValue;
  metadata?: SummaryMetadata;
}

export interface TbEvent {
  /** Seconds since the Unix epoch. */
  wallTime: number;
  step: number;
  fileVersion?: string;
  /** The summary's values (absent for events that carry no summary). */
  summary?: SummaryValue[];
  /** Field numbers of Event fields we do not model (graph_def, session_log, ...), in file order. */
  unknownFields?: number[];
}

/** An event as read back from a file. */
export type DecodedEvent = TbEvent;

// ---------------------------------------------------------------------------------------------
// Encoding

function encodeShape(w: ProtoWriter, shape: number[]): void {
  for (const size of shape) w.message(2, (d) => {
    if (size !== 0) d.varint(1, size);
  });
}

function encodeTensor(w: ProtoWriter, t: TensorValue): void {
  if (t.dtype !== 0) w.varint(1, t.dtype);
  // tensor_shape is a message field: present even when it has no dims (a scalar tensor).
  w.message(2, (s) => encodeShape(s, t.shape));
  for (const s of t.stringVal) w.bytes(8, s);
}

function encodeImage(w: ProtoWriter, img: SummaryImage): void {
  if (img.height !== 0) w.varint(1, img.height);
  if (img.width !== 0) w.varint(2, img.width);
  if (img.colorspace !== 0) w.varint(3, img.colorspace);
  if (img.encodedImage.length !== 0) w.bytes(4, img.encodedImage);
}

function encodeMetadata(w: ProtoWriter, m: SummaryMetadata): void {
  const pd = m.pluginData;
  if (pd) {
    w.message(1, (p) => {
      if (pd.pluginName !== '') p.string(1, pd.pluginName);
      if (pd.content.length !== 0) p.bytes(2, pd.content);
    });
  }
}

function encodeValue(w: ProtoWriter, v: SummaryValue): void {
  const set = (v.simpleValue !== undefined ? 1 : 0) + (v.image ? 1 : 0) + (v.tensor ? 1 : 0);
  if (set > 1) throw new Error(`summary value "${v.tag}": simpleValue, image and tensor are a oneof; set only one`);
  if (v.tag !== '') w.string(1, v.tag);
  if (v.simpleValue !== undefined) w.float(2, v.simpleValue);
  const image = v.image;
  if (image) w.message(4, (i) => encodeImage(i, image));
  const tensor = v.tensor;
  if (tensor) w.message(8, (t) => encodeTensor(t, tensor));
  const metadata = v.metadata;
  if (metadata) w.message(9, (m) => encodeMetadata(m, metadata));
}

/** Serialises an Event message (the payload of one TFRecord). */
export function encodeEvent(e: TbEvent): Buffer {
  if (e.fileVersion !== undefined && e.summary !== undefined) {
    throw new Error('Event.file_version and Event.summary are a oneof; set only one');
  }
  if (!Number.isSafeInteger(e.step)) throw new RangeError(`step must be a safe integer, got ${e.step}`);
  const w = new ProtoWriter(64);
  if (e.wallTime !== 0) w.double(1, e.wallTime);
  if (e.step !== 0) w.varint(2, e.step);
  if (e.fileVersion !== undefined) w.string(3, e.fileVersion);
  const summary = e.summary;
  if (summary !== undefined) {
    w.message(5, (s) => {
      for (const v of summary) s.message(1, (vw) => encodeValue(vw, v));
    });
  }
  return w.finish();
}

// ---------------------------------------------------------------------------------------------
// Builders for the three summary kinds we write (the same shapes PyTorch's SummaryWriter writes).

export function fileVersionEvent(wallTime: number): TbEvent {
  return { wallTime, step: 0, fileVersion: FILE_VERSION };
}

export function scalarEvent(tag: string, value: number, step: number, wallTime: number): TbEvent {
  return { wallTime, step, summary: [{ tag, simpleValue: value }] };
}

export function imageEvent(
  tag: string,
  encodedImage: Uint8Array,
  height: number,
  width: number,
  colorspace: number,
  step: number,
  wallTime: number,
): TbEvent {
  return { wallTime, step, summary: [{ tag, image: { height, width, colorspace, encodedImage } }] };
}

/** A text summary: a DT_STRING tensor of shape [1] tagged for the "text" plugin (empty plugin content, version 0). */
export function textEvent(tag: string, text: string, step: number, wallTime: number): TbEvent {
  return {
    wallTime,
    step,
    summary: [
      {
        tag,
        tensor: { dtype: DT_STRING, shape: [1], stringVal: [Buffer.from(text, 'utf8')] },
        metadata: { pluginData: { pluginName: 'text', content: new Uint8Array(0) } },
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Decoding. Unknown fields are skipped (Event's are listed in unknownFields); a field with the
// wrong wire type for its number is an error.

function expectWire(field: number, got: WireType, want: WireType, msg: string): void {
  if (got !== want) throw new Error(`${msg} field ${field}: wire type ${got}, expected ${want}`);
}

function decodeShape(data: Uint8Array): number[] {
  const r = new ProtoReader(data);
  const dims: number[] = [];
  for (let f = r.next(); f; f = r.next()) {
    if (f.field === 2) {
      expectWire(f.field, f.wire, WireType.LengthDelimited, 'TensorShapeProto');
      const d = new ProtoReader(r.bytes());
      let size = 0;
      for (let g = d.next(); g; g = d.next()) {
        if (g.field === 1) {
          expectWire(g.field, g.wire, WireType.Varint, 'TensorShapeProto.Dim');
          size = d.int64();
        } else d.skip(g.wire);
      }
      dims.push(size);
    } else r.skip(f.wire);
  }
  return dims;
}

function decodeTensor(data: Uint8Array): TensorValue {
  const r = new ProtoReader(data);
  const t: TensorValue = { dtype: 0, shape: [], stringVal: [] };
  for (let f = r.next(); f; f = r.next()) {
    switch (f.field) {
      case 1:
        expectWire(f.field, f.wire, WireType.Varint, 'TensorProto');
        t.dtype = r.int32();
        break;
      case 2:
        expectWire(f.field, f.wire, WireType.LengthDelimited, 'TensorProto');
        t.shape = decodeShape(r.bytes());
        break;
      case 8:
        expectWire(f.field, f.wire, WireType.LengthDelimited, 'TensorProto');
        t.stringVal.push(r.bytes());
        break;
      default:
        r.skip(f.wire);
    }
  }
  return t;
}

function decodeImage(data: Uint8Array): SummaryImage {
  const r = new ProtoReader(data);
  const img: SummaryImage = { height: 0, width: 0, colorspace: 0, encodedImage: new Uint8Array(0) };
  for (let f = r.next(); f; f = r.next()) {
    switch (f.field) {
      case 1:
      case 2:
      case 3: {
        expectWire(f.field, f.wire, WireType.Varint, 'Summary.Image');
        const v = r.int32();
        if (f.field === 1) img.height = v;
        else if (f.field === 2) img.width = v;
        else img.colorspace = v;
        break;
      }
      case 4:
        expectWire(f.field, f.wire, WireType.LengthDelimited, 'Summary.Image');
        img.encodedImage = r.bytes();
        break;
      default:
        r.skip(f.wire);
    }
  }
  return img;
}

function decodeMetadata(data: Uint8Array): SummaryMetadata {
  const r = new ProtoReader(data);
  const m: SummaryMetadata = {};
  for (let f = r.next(); f; f = r.next()) {
    if (f.field === 1) {
      expectWire(f.field, f.wire, WireType.LengthDelimited, 'SummaryMetadata');
      const p = new ProtoReader(r.bytes());
      const pd: PluginData = { pluginName: '', content: new Uint8Array(0) };
      for (let g = p.next(); g; g = p.next()) {
        if (g.field === 1) {
          expectWire(g.field, g.wire, WireType.LengthDelimited, 'PluginData');
          pd.pluginName = p.string();
        } else if (g.field === 2) {
          expectWire(g.field, g.wire, WireType.LengthDelimited, 'PluginData');
          pd.content = p.bytes();
        } else p.skip(g.wire);
      }
      m.pluginData = pd;
    } else r.skip(f.wire);
  }
  return m;
}

function decodeValue(data: Uint8Array): SummaryValue {
  const r = new ProtoReader(data);
  const v: SummaryValue = { tag: '' };
  for (let f = r.next(); f; f = r.next()) {
    switch (f.field) {
      case 1:
        expectWire(f.field, f.wire, WireType.LengthDelimited, 'Summary.Value');
        v.tag = r.string();
        break;
      case 2:
        expectWire(f.field, f.wire, WireType.Fixed32, 'Summary.Value');
        v.simpleValue = r.float();
        break;
      case 4:
        expectWire(f.field, f.wire, WireType.LengthDelimited, 'Summary.Value');
        v.image = decodeImage(r.bytes());
        break;
      case 8:
        expectWire(f.field, f.wire, WireType.LengthDelimited, 'Summary.Value');
        v.tensor = decodeTensor(r.bytes());
        break;
      case 9:
        expectWire(f.field, f.wire, WireType.LengthDelimited, 'Summary.Value');
        v.metadata = decodeMetadata(r.bytes());
        break;
      default:
        r.skip(f.wire);
    }
  }
  return v;
}

/** Parses an Event message. Byte fields in the result are views into `data`. */
export function decodeEvent(data: Uint8Array): DecodedEvent {
  const r = new ProtoReader(data);
  const e: DecodedEvent = { wallTime: 0, step: 0 };
  for (let f = r.next(); f; f = r.next()) {
    switch (f.field) {
      case 1:
        expectWire(f.field, f.wire, WireType.Fixed64, 'Event');
        e.wallTime = r.double();
        break;
      case 2:
        expectWire(f.field, f.wire, WireType.Varint, 'Event');
        e.step = r.int64();
        break;
      case 3:
        expectWire(f.field, f.wire, WireType.LengthDelimited, 'Event');
        e.fileVersion = r.string();
        break;
      case 5: {
        expectWire(f.field, f.wire, WireType.LengthDelimited, 'Event');
        const s = new ProtoReader(r.bytes());
        const values = e.summary ?? [];
        for (let g = s.next(); g; g = s.next()) {
          if (g.field === 1) {
            expectWire(g.field, g.wire, WireType.LengthDelimited, 'Summary');
            values.push(decodeValue(s.bytes()));
          } else s.skip(g.wire);
        }
        e.summary = values;
        break;
      }
      default:
        (e.unknownFields ??= []).push(f.field);
        r.skip(f.wire);
    }
  }
  return e;
}

/** The UTF-8 text of a text-plugin value (first string_val), or undefined if `v` is not one. */
export function textOf(v: SummaryValue): string | undefined {
  const t = v.tensor;
  if (!t || t.dtype !== DT_STRING || t.stringVal.length === 0) return undefined;
  const s = t.stringVal[0]!;
  return Buffer.from(s.buffer, s.byteOffset, s.byteLength).toString('utf8');
}
