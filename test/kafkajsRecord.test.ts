import { FastCheck as fc } from "effect"
import { createRequire } from "node:module"
import { describe, expect, it } from "vitest"
import { type BatchContext, type KafkajsDecoder, type KafkajsLongClass, makeRecordDecoder } from "../src/broker/kafka/recordDecoder.js"
import { type KafkajsEncoderClass, makeRecordEncoder, type RecordInput } from "../src/broker/kafka/recordEncoder.js"

// kafkajs' own modules: the encoder the bundle hands to makeRecordEncoder, and the record encoder it replaces.
const require = createRequire(import.meta.url)
const Encoder = require("kafkajs/src/protocol/encoder.js") as KafkajsEncoderClass
const kafkajsRecord = require("kafkajs/src/protocol/recordBatch/record/v0/index.js") as (r: RecordInput) => { buffer: Buffer }
const productRecord = makeRecordEncoder(Encoder) as unknown as (r: RecordInput) => { buffer: Buffer }
const Decoder = require("kafkajs/src/protocol/decoder.js") as new (buffer: Buffer | null) => KafkajsDecoder
const Long = require("kafkajs/src/utils/long.js") as KafkajsLongClass
const TimestampTypes = require("kafkajs/src/protocol/timestampTypes.js") as { LOG_APPEND_TIME: number; CREATE_TIME: number }
type DecodeRecord = (decoder: KafkajsDecoder, context?: BatchContext) => Record<string, unknown>
const kafkajsDecode = require("kafkajs/src/protocol/recordBatch/record/v0/decoder.js") as DecodeRecord
const productDecode = makeRecordDecoder(Long, TimestampTypes.LOG_APPEND_TIME) as DecodeRecord
/** A record as a batch holds it (length-prefixed), opened the way kafkajs' batch decoder opens it. */
const opened = (bytes: Buffer) => new Decoder(new Decoder(bytes).readVarIntBytes())

const text = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.constantFrom("", "BTCUSDT", '{"symbol":"ÉTH"}', "x".repeat(300)))
const bytes = fc.oneof(text, fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)))
const headerValue = fc.oneof(bytes, fc.array(bytes, { maxLength: 3 }))
const record: fc.Arbitrary<RecordInput> = fc.record(
  {
    offsetDelta: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    timestampDelta: fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    key: fc.oneof(bytes, fc.constant(null)),
    value: fc.oneof(bytes, fc.constant(null)),
    headers: fc.dictionary(fc.oneof(text, fc.constantFrom("__proto__", "toString", "constructor")), headerValue, { maxKeys: 4 })
  },
  { requiredKeys: ["key", "value"] }
)

describe("the record encoder the bundle uses in place of kafkajs' own", () => {
  it("writes the bytes kafkajs writes, for any key, value, headers and deltas", () => {
    fc.assert(
      fc.property(record, (r) => {
        expect(productRecord(r).buffer.equals(kafkajsRecord(r).buffer)).toBe(true)
      }),
      { numRuns: 2000 }
    )
  })

  it("writes the contract's messages as kafkajs does: symbol key, JSON value, the two headers", () => {
    const r: RecordInput = {
      offsetDelta: 7,
      timestampDelta: 12,
      key: "BTCUSDT",
      value: '{"timestamp_utc":"2026-12-01T00:00:00.000001+00:00","symbol":"BTCUSDT"}',
      headers: { "contract-version": "1", "content-type": "application/json" }
    }
    const ours = productRecord(r).buffer
    expect(ours.equals(kafkajsRecord(r).buffer)).toBe(true)
    expect(ours.includes(Buffer.from("contract-version"))).toBe(true)
    expect(ours.includes(Buffer.from("application/json"))).toBe(true)
  })

  it("fails where kafkajs fails: a header without a value", () => {
    const r = { key: "k", value: "v", headers: { broken: null } } as unknown as RecordInput
    expect(() => kafkajsRecord(r)).toThrow(TypeError)
    expect(() => productRecord(r)).toThrow(TypeError)
  })
})

/** Decimal strings of int64s: small, around 2^53 (where numbers stop being exact), negative, and anything. */
const int64Text = fc.oneof(
  fc.integer({ min: 0, max: 2 ** 31 }).map(String),
  fc.bigInt({ min: 2n ** 53n - 50n, max: 2n ** 53n + 50n }).map(String),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String),
  fc.constantFrom("0", "-1", "1764547200000")
)
const context: fc.Arbitrary<BatchContext> = fc.record(
  {
    firstOffset: int64Text,
    firstTimestamp: int64Text,
    magicByte: fc.constant(2),
    isControlBatch: fc.boolean(),
    timestampType: fc.constantFrom(TimestampTypes.CREATE_TIME, TimestampTypes.LOG_APPEND_TIME),
    maxTimestamp: fc.oneof(int64Text, fc.constant(""))
  },
  { requiredKeys: ["firstOffset", "firstTimestamp"] }
)
/** Records as a producer writes them, deltas from small to past 2^48 (where the short path hands over to Long). */
const written = fc.array(
  fc.record({
    offsetDelta: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    timestampDelta: fc.oneof(fc.integer({ min: -1000, max: 100_000 }), fc.integer({ min: -(2 ** 52), max: 2 ** 52 })),
    key: fc.oneof(bytes, fc.constant(null)),
    value: fc.oneof(bytes, fc.constant(null)),
    headers: fc.dictionary(fc.oneof(text, fc.constantFrom("__proto__", "toString")), headerValue, { maxKeys: 3 })
  }),
  { minLength: 1, maxLength: 8 }
)

describe("the record decoder the bundle uses in place of kafkajs' own", () => {
  it("reads what kafkajs reads, for any record and batch, offsets and timestamps past 2^53 included", () => {
    fc.assert(
      fc.property(context, written, (batch, records) => {
        // one context object for the whole batch, as kafkajs' batch decoder passes it
        for (const r of records) {
          const bytes = kafkajsRecord(r).buffer
          const theirs = kafkajsDecode(opened(bytes), batch)
          const ours = productDecode(opened(bytes), batch)
          expect(ours).toStrictEqual(theirs)
          expect(Object.keys(ours)).toEqual(Object.keys(theirs))
          const [ourHeaders, theirHeaders] = [ours["headers"] as object, theirs["headers"] as object]
          expect(Object.getOwnPropertyNames(ourHeaders)).toEqual(Object.getOwnPropertyNames(theirHeaders))
          expect(Object.getPrototypeOf(ourHeaders)).toBe(Object.getPrototypeOf(theirHeaders))
        }
      }),
      { numRuns: 1000 }
    )
  })

  it("gives each record of a contract message its offset, timestamp, key, value and headers", () => {
    const batch: BatchContext = { firstOffset: "41", firstTimestamp: "1764547200000", magicByte: 2, timestampType: TimestampTypes.CREATE_TIME, maxTimestamp: "1764547200123" }
    const bytes = productRecord({
      offsetDelta: 2,
      timestampDelta: 123,
      key: "ETHUSDT",
      value: '{"symbol":"ETHUSDT"}',
      headers: { "contract-version": "1", "content-type": "application/json" }
    }).buffer
    const record = productDecode(opened(bytes), batch)
    expect(record["offset"]).toBe("43")
    expect(record["timestamp"]).toBe("1764547200123")
    expect(String(record["key"])).toBe("ETHUSDT")
    expect(String(record["value"])).toBe('{"symbol":"ETHUSDT"}')
    expect(Object.fromEntries(Object.entries(record["headers"] as object).map(([k, v]) => [k, String(v)]))).toEqual({
      "contract-version": "1",
      "content-type": "application/json"
    })
  })
})

describe("records written one after another, as a send writes them", () => {
  type Batch = (b: { compression: number; records: ReadonlyArray<{ buffer: Buffer }>; firstTimestamp: number; maxTimestamp: number }) => Promise<{ buffer: Buffer }>
  const { RecordBatch } = require("kafkajs/src/protocol/recordBatch/v0/index.js") as { RecordBatch: Batch }
  const { Types: Compression } = require("kafkajs/src/protocol/message/compression/index.js") as { Types: { None: number; GZIP: number } }
  const large = fc.constantFrom("x".repeat(70_000), "é".repeat(40_000)).map((value) => ({ key: "BTCUSDT", value, headers: {} }))

  it("keep every record's bytes while later records are written, records larger than a slab included", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof({ weight: 9, arbitrary: record }, { weight: 1, arbitrary: large }), { minLength: 1, maxLength: 400 }), (records) => {
        const encoded = records.map((r) => productRecord(r))
        records.forEach((r, i) => expect(encoded[i]!.buffer.equals(kafkajsRecord(r).buffer)).toBe(true))
      }),
      { numRuns: 60 }
    )
  })

  it("make the record batch kafkajs makes, plain and compressed", async () => {
    const records = Array.from({ length: 2500 }, (_, i) => ({
      offsetDelta: i,
      timestampDelta: i % 7,
      key: ["BTCUSDT", "ETHUSDT", "SOLUSDT"][i % 3]!,
      value: `{"symbol":"BTCUSDT","lastPrice":"${(i * 1.5).toFixed(8)}"}`,
      headers: { "contract-version": "1", "content-type": "application/json" }
    }))
    for (const compression of [Compression.None, Compression.GZIP]) {
      const batch = (encode: (r: RecordInput) => { buffer: Buffer }) =>
        RecordBatch({ compression, records: records.map(encode), firstTimestamp: 1764547200000, maxTimestamp: 1764547200006 })
      expect((await batch(productRecord)).buffer.equals((await batch(kafkajsRecord)).buffer)).toBe(true)
    }
  })
})
