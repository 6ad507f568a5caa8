/**
 * kafkajs' record encoder (kafkajs/src/protocol/recordBatch/record/v0/index.js, kafkajs 2.2.4),
 * writing each record straight into a shared slab. kafkajs builds a zero-filled 512-byte Encoder per
 * record, another per header, a Buffer per varint and a Long per timestamp delta: most of what it
 * spends per record, and most of the producer's garbage (bench kafka-encode measures it). Same bytes,
 * same order, same errors as kafkajs' own (test/kafkajsRecord.test.ts); the record batch, its CRC and
 * everything else stay kafkajs'. scripts/build.mjs puts it in place of kafkajs' module in the bundle,
 * given kafkajs' Encoder, and refuses to build when that module is not the one it replaces.
 */

type Bytes = Buffer | string | null | undefined
type HeaderValue = Buffer | string

/** What this needs of kafkajs' Encoder (kafkajs/src/protocol/encoder.js). */
export interface KafkajsEncoder {
  writeVarLong(value: number): KafkajsEncoder
  readonly buffer: Buffer
}
export interface KafkajsEncoderClass {
  new (initialSize?: number): KafkajsEncoder
  sizeOfVarInt(value: number): number
  sizeOfVarLong(value: number): number
  sizeOfVarIntBytes(value: Bytes): number
}

export interface RecordInput {
  readonly offsetDelta?: number
  readonly timestampDelta?: number
  readonly key: Bytes
  readonly value: Bytes
  readonly headers?: Readonly<Record<string, HeaderValue | ReadonlyArray<HeaderValue>>>
}

/**
 * An encoded record as kafkajs' RecordBatch takes it: `writeEncoderArray` checks that `buf` is a
 * Buffer and copies `buffer`.
 */
export interface EncodedRecord {
  readonly buf: Buffer
  readonly buffer: Buffer
}

/** Records are cut from slabs of this size (a larger record gets a slab of its own). */
const SLAB_BYTES = 64 * 1024
/** Up to here a number's zigzag (2|v|) is exact, so a varlong needs no Long. */
const SAFE_VARLONG = 2 ** 51

export const makeRecordEncoder = (Encoder: KafkajsEncoderClass) => {
  let slab = Buffer.allocUnsafe(SLAB_BYTES)
  let used = 0

  /** As kafkajs: Buffer.byteLength of each key and value (a null or undefined header value throws here). */
  const sizeOfHeaders = (keys: ReadonlyArray<string>, values: ReadonlyArray<HeaderValue>): number => {
    let size = Encoder.sizeOfVarInt(keys.length)
    for (let i = 0; i < keys.length; i++) {
      const keySize = Buffer.byteLength(keys[i]!)
      const valueSize = Buffer.byteLength(values[i]!)
      size += Encoder.sizeOfVarInt(keySize) + keySize + Encoder.sizeOfVarInt(valueSize) + valueSize
    }
    return size
  }

  /** kafkajs' zigzag varlong of a timestamp delta; its own (Long) encoding where a number would not be exact. */
  const varLong = (value: number): Buffer | undefined =>
    Number.isInteger(value) && Math.abs(value) < SAFE_VARLONG ? undefined : new Encoder(10).writeVarLong(value).buffer
  const sizeOfVarLong = (value: number, long: Buffer | undefined): number => {
    if (long !== undefined) return long.length
    let zigzag = value >= 0 ? 2 * value : -2 * value - 1
    let size = 1
    while (zigzag >= 128) {
      zigzag = Math.floor(zigzag / 128)
      size++
    }
    return size
  }

  // The record being written: its bytes and the next position (one record at a time, never re-entered).
  let buf = slab
  let at = 0
  // kafkajs' writeVarInt: 32-bit zigzag, then 7 bits at a time
  const writeVarInt = (v: number) => {
    let u = (v << 1) ^ (v >> 31)
    while ((u & 0xffffff80) !== 0) {
      buf[at++] = (u & 0x7f) | 0x80
      u >>>= 7
    }
    buf[at++] = u & 0x7f
  }
  const writeText = (text: string) => {
    const length = Buffer.byteLength(text, "utf8")
    writeVarInt(length)
    at += buf.write(text, at, length, "utf8")
  }
  // kafkajs' writeVarIntBytes: null as -1, a Buffer as is, anything else as the UTF-8 of String(v)
  const writeBytes = (v: Bytes) => {
    if (v == null) writeVarInt(-1)
    else if (Buffer.isBuffer(v)) {
      writeVarInt(v.length)
      at += v.copy(buf, at)
    } else writeText(String(v))
  }

  return ({ offsetDelta = 0, timestampDelta = 0, key, value, headers = {} }: RecordInput): EncodedRecord => {
    // kafkajs' order: the headers' own keys in order, an array header once per value.
    const keys: Array<string> = []
    const values: Array<HeaderValue> = []
    for (const headerKey of Object.keys(headers)) {
      const header = headers[headerKey]!
      if (!Array.isArray(header)) {
        keys.push(headerKey)
        values.push(header as HeaderValue)
      } else {
        for (const v of header as ReadonlyArray<HeaderValue>) {
          keys.push(headerKey)
          values.push(v)
        }
      }
    }
    const long = varLong(timestampDelta)
    const sizeOfBody =
      1 + // the attributes byte
      sizeOfVarLong(timestampDelta, long) +
      Encoder.sizeOfVarInt(offsetDelta) +
      Encoder.sizeOfVarIntBytes(key) +
      Encoder.sizeOfVarIntBytes(value) +
      sizeOfHeaders(keys, values)
    const size = Encoder.sizeOfVarInt(sizeOfBody) + sizeOfBody
    if (used + size > slab.length) {
      slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, size))
      used = 0
    }
    buf = slab
    const start = used
    at = start

    writeVarInt(sizeOfBody)
    buf[at++] = 0 // no record attributes are used
    if (long !== undefined) at += long.copy(buf, at)
    else {
      let zigzag = timestampDelta >= 0 ? 2 * timestampDelta : -2 * timestampDelta - 1
      while (zigzag >= 128) {
        buf[at++] = (zigzag % 128) | 0x80
        zigzag = Math.floor(zigzag / 128)
      }
      buf[at++] = zigzag
    }
    writeVarInt(offsetDelta)
    writeBytes(key)
    writeBytes(value)
    writeVarInt(keys.length)
    for (let i = 0; i < keys.length; i++) {
      writeText(keys[i]!)
      writeBytes(values[i]!)
    }
    // The slab is not zero-filled: a record must fill exactly what was sized for it.
    if (at !== start + size) throw new Error(`record encoder: wrote ${at - start} bytes, sized ${size}`)
    used = at
    const bytes = buf.subarray(start, at)
    return { buf: bytes, buffer: bytes }
  }
}
