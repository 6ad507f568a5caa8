/**
 * kafkajs' record encoder (kafkajs/src/protocol/recordBatch/record/v0/index.js, kafkajs 2.2.4) with
 * the headers written into the record's own buffer. kafkajs builds a 512-byte Encoder for each header
 * of each record, copies it out through a Buffer view, and filters and maps arrays on the way: with the
 * contract's two headers, a large part of what kafkajs spends per record (bench kafka-encode measures it).
 * Same bytes, same order, same errors as kafkajs' own (test/kafkajsRecord.test.ts); the record batch,
 * its CRC and everything else stay kafkajs'. scripts/build.mjs puts it in place of kafkajs' module in
 * the bundle, given kafkajs' Encoder, and refuses to build when that module is not the one it replaces.
 */

type Bytes = Buffer | string | null | undefined
type HeaderValue = Buffer | string

/** What this needs of kafkajs' Encoder (kafkajs/src/protocol/encoder.js). */
export interface KafkajsEncoder {
  writeVarInt(value: number): KafkajsEncoder
  writeInt8(value: number): KafkajsEncoder
  writeVarLong(value: number): KafkajsEncoder
  writeVarIntBytes(value: Bytes): KafkajsEncoder
  writeVarIntString(value: string): KafkajsEncoder
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

export const makeRecordEncoder = (Encoder: KafkajsEncoderClass) => {
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

  return ({ offsetDelta = 0, timestampDelta = 0, key, value, headers = {} }: RecordInput): KafkajsEncoder => {
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
    const sizeOfBody =
      1 + // the attributes byte
      Encoder.sizeOfVarLong(timestampDelta) +
      Encoder.sizeOfVarInt(offsetDelta) +
      Encoder.sizeOfVarIntBytes(key) +
      Encoder.sizeOfVarIntBytes(value) +
      sizeOfHeaders(keys, values)
    // One buffer for the whole record: its length prefix (at most 5 bytes) and its body.
    const encoder = new Encoder(sizeOfBody + 5)
      .writeVarInt(sizeOfBody)
      .writeInt8(0) // no record attributes are used
      .writeVarLong(timestampDelta)
      .writeVarInt(offsetDelta)
      .writeVarIntBytes(key)
      .writeVarIntBytes(value)
      .writeVarInt(keys.length)
    for (let i = 0; i < keys.length; i++) encoder.writeVarIntString(keys[i]!).writeVarIntBytes(values[i]!)
    return encoder
  }
}
