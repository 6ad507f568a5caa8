import { FastCheck as fc } from "effect"
import { createRequire } from "node:module"
import { describe, expect, it } from "vitest"
import { type KafkajsEncoderClass, makeRecordEncoder, type RecordInput } from "../src/broker/kafka/recordEncoder.js"

// kafkajs' own modules: the encoder the bundle hands to makeRecordEncoder, and the record encoder it replaces.
const require = createRequire(import.meta.url)
const Encoder = require("kafkajs/src/protocol/encoder.js") as KafkajsEncoderClass
const kafkajsRecord = require("kafkajs/src/protocol/recordBatch/record/v0/index.js") as (r: RecordInput) => { buffer: Buffer }
const productRecord = makeRecordEncoder(Encoder) as unknown as (r: RecordInput) => { buffer: Buffer }

const text = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.constantFrom("", "BTCUSDT", '{"symbol":"ÉTH"}', "x".repeat(300)))
const bytes = fc.oneof(text, fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)))
const headerValue = fc.oneof(bytes, fc.array(bytes, { maxLength: 3 }))
const record: fc.Arbitrary<RecordInput> = fc.record(
  {
    offsetDelta: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    timestampDelta: fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    key: fc.oneof(bytes, fc.constant(null)),
    value: fc.oneof(bytes, fc.constant(null)),
    headers: fc.dictionary(text, headerValue, { maxKeys: 4 })
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
