/**
 * kafkajs' record decoder (kafkajs/src/protocol/recordBatch/record/v0/decoder.js, kafkajs 2.2.4) with
 * the arithmetic done in numbers where that is exact. kafkajs parses the batch's first offset and first
 * timestamp from strings into Longs again for every record, reads the timestamp delta byte by byte into
 * Longs, and rebuilds the headers object once per header. Same result, same fields in the same order,
 * as kafkajs' own (test/kafkajsRecord.test.ts): offsets and timestamps past 2^53 still go through Long.
 * scripts/build.mjs puts it in place of kafkajs' module in the bundle, given kafkajs' Long and
 * TimestampTypes, and refuses to build when that module is not the one it replaces.
 */

/** What this needs of kafkajs' Decoder (kafkajs/src/protocol/decoder.js). */
export interface KafkajsDecoder {
  buffer: Buffer
  offset: number
  readInt8(): number
  readVarInt(): number
  readVarLong(): unknown
  readVarIntBytes(): Buffer | null
  readVarIntString(): string | null
}

/** What this needs of kafkajs' Long (kafkajs/src/utils/long.js). */
export interface KafkajsLong {
  add(other: unknown): KafkajsLong
  toString(): string
}
export interface KafkajsLongClass {
  fromValue(value: unknown): KafkajsLong
  fromNumber(value: number): KafkajsLong
}

export interface BatchContext {
  readonly firstOffset?: string
  readonly firstTimestamp?: string
  readonly magicByte?: number
  readonly isControlBatch?: boolean
  readonly timestampType?: number
  readonly maxTimestamp?: string
}

/** A decimal string's number when it is a safe integer written as JavaScript writes it, else undefined. */
const exactNumber = (text: string | undefined): number | undefined => {
  if (text === undefined) return undefined
  const n = Number(text)
  return Number.isSafeInteger(n) && String(n) === text ? n : undefined
}

/**
 * A zigzag varlong of at most 7 bytes (|value| < 2^48) read as a number, the decoder moved past it;
 * undefined, the decoder untouched, for a longer one.
 */
const readShortVarLong = (decoder: KafkajsDecoder): number | undefined => {
  const bytes = decoder.buffer
  let at = decoder.offset
  let value = 0
  let scale = 1
  for (let i = 0; i < 7 && at < bytes.length; i++) {
    const byte = bytes[at++]!
    value += (byte & 0x7f) * scale
    if (byte < 0x80) {
      decoder.offset = at
      return value % 2 === 0 ? value / 2 : -(value + 1) / 2
    }
    scale *= 128
  }
  return undefined
}

export const makeRecordDecoder = (Long: KafkajsLongClass, logAppendTime: number) => {
  /** The batch's first offset and timestamp as numbers, once per batch (a batch shares one context object). */
  const bases = new WeakMap<BatchContext, { readonly offset: number | undefined; readonly timestamp: number | undefined }>()

  return (decoder: KafkajsDecoder, batchContext: BatchContext = {}) => {
    const { firstOffset, firstTimestamp, magicByte, isControlBatch = false, timestampType, maxTimestamp } = batchContext
    let base = bases.get(batchContext)
    if (base === undefined) {
      base = { offset: exactNumber(firstOffset), timestamp: exactNumber(firstTimestamp) }
      bases.set(batchContext, base)
    }
    const attributes = decoder.readInt8()

    const shortDelta = readShortVarLong(decoder)
    const timestampDelta = shortDelta === undefined ? decoder.readVarLong() : undefined
    let timestamp: string
    if (timestampType === logAppendTime && maxTimestamp) timestamp = maxTimestamp
    else if (shortDelta !== undefined && base.timestamp !== undefined && Number.isSafeInteger(base.timestamp + shortDelta)) {
      timestamp = String(base.timestamp + shortDelta)
    } else {
      timestamp = Long.fromValue(firstTimestamp)
        .add(shortDelta === undefined ? timestampDelta : Long.fromNumber(shortDelta))
        .toString()
    }

    const offsetDelta = decoder.readVarInt()
    const offset =
      base.offset !== undefined && Number.isSafeInteger(base.offset + offsetDelta)
        ? String(base.offset + offsetDelta)
        : Long.fromValue(firstOffset).add(offsetDelta).toString()

    const key = decoder.readVarIntBytes()
    const value = decoder.readVarIntBytes()

    // As kafkajs' reduce: a repeated key collects its values in an array, and the value before is
    // looked up through the prototype, as kafkajs does (its object literal's computed key makes even
    // `__proto__` an own property, which plain assignment would not).
    const headers: Record<string, unknown> = {}
    const count = decoder.readVarInt()
    for (let i = 0; i < count; i++) {
      const headerKey = String(decoder.readVarIntString())
      const headerValue = decoder.readVarIntBytes()
      const before = headers[headerKey]
      const next = before === undefined ? headerValue : Array.isArray(before) ? before.concat([headerValue]) : [before, headerValue]
      if (headerKey === "__proto__") Object.defineProperty(headers, headerKey, { value: next, writable: true, enumerable: true, configurable: true })
      else headers[headerKey] = next
    }

    return {
      magicByte,
      attributes, // unused record attributes, as kafkajs returns them
      timestamp,
      offset,
      key,
      value,
      headers,
      isControlRecord: isControlBatch,
      batchContext
    }
  }
}
