import { Either, FastCheck as fc, Schema } from "effect"
import { assert, describe, it } from "vitest"
import { tickCodec } from "../src/broker/kafka/codec.js"
import { eventJson } from "../src/domain/EventJson.js"
import {
  decimalPattern,
  formatInstantMicros,
  parseInstantMicros,
  symbolPattern,
  type TickerEvent,
  TickerEventJson,
  type TickerSymbol,
  toTick
} from "../src/domain/Ticker.js"

/** What the adapter did before: the whole schema on every message, then the tick. */
const schemaDecode = (text: string) => Schema.decodeUnknownEither(TickerEventJson)(text).pipe(Either.map(toTick))
const schemaEncode = Schema.encodeSync(TickerEventJson)

const instant = fc.integer({ min: 0, max: 4_102_444_800_000_000 }).map(formatInstantMicros)
const event: fc.Arbitrary<TickerEvent> = fc
  .record(
    {
      timestamp_utc: instant,
      symbol: fc.stringMatching(symbolPattern).map((s) => s as TickerSymbol),
      lastPrice: fc.stringMatching(decimalPattern),
      priceChangePercent: fc.stringMatching(decimalPattern),
      volume: fc.stringMatching(decimalPattern),
      source: fc.string({ minLength: 1 }).filter((s) => s.trim() === s),
      event_time: instant
    },
    { requiredKeys: ["timestamp_utc", "symbol", "lastPrice", "priceChangePercent", "volume", "source"] }
  )

/** Documents near the contract: valid ones with one field broken, retyped, removed or added. */
const brokenValues: ReadonlyArray<unknown> = [
  undefined,
  null,
  1,
  "",
  " BTCUSDT",
  "btcusdt",
  "1e5",
  "1.",
  ".5",
  "68000.5 ",
  "2026-02-30T00:00:00+00:00",
  "2026-01-15T24:00:00Z",
  "2026-01-15T14:03:22.913852+24:00",
  "2026-01-15 14:03:22Z",
  "2026-01-15T14:03:22",
  68000.5,
  [],
  {}
]
const fields = ["timestamp_utc", "symbol", "lastPrice", "priceChangePercent", "volume", "source", "event_time", "extra"]
const near = fc
  .tuple(event, fc.constantFrom(...fields), fc.constantFrom(...brokenValues))
  .map(([e, field, value]) => JSON.stringify({ ...e, [field]: value }))
const garbage = fc.oneof(
  fc.constantFrom("{not json", "[]", "null", "42", '"text"', "", "{}", '{"timestamp_utc":null}'),
  fc.json()
)

describe("the tick codec of the Kafka adapter", () => {
  it("encodes exactly what Schema.encode(TickerEventJson) wrote, whatever the event object's key order", () => {
    fc.assert(
      fc.property(event, (e) => {
        assert.strictEqual(eventJson(e), schemaEncode(e))
        const reordered = Object.fromEntries(Object.entries(e).reverse()) as TickerEvent
        assert.strictEqual(eventJson(reordered), schemaEncode(e))
        assert.strictEqual(tickCodec.encode(toTick(e)), schemaEncode(e))
      }),
      { numRuns: 500 }
    )
  })

  it("decodes what the schema accepts into the same Tick, and rejects what it rejects with the schema's reason", () => {
    const same = (text: string) => {
      const fast = tickCodec.decode(text)
      const reference = schemaDecode(text)
      assert.strictEqual(fast._tag, reference._tag, text)
      if (Either.isRight(fast) && Either.isRight(reference)) assert.deepStrictEqual(fast.right, reference.right)
      if (Either.isLeft(fast)) assert.isAbove(fast.left.length, 0)
    }
    fc.assert(fc.property(event, (e) => same(JSON.stringify(e))), { numRuns: 500 })
    fc.assert(fc.property(near, same), { numRuns: 2_000 })
    fc.assert(fc.property(garbage, same), { numRuns: 500 })
  })

  it("says why in one line: not JSON, or which field is wrong", () => {
    const reason = (text: string) => Either.getLeft(tickCodec.decode(text)).pipe((o) => (o._tag === "Some" ? o.value : ""))
    assert.include(reason("{not json"), "JSON")
    const e = { timestamp_utc: "2026-01-15T14:03:22.913852+00:00", symbol: "BTCUSDT", lastPrice: 68000.5 }
    assert.include(reason(JSON.stringify(e)), "lastPrice")
    assert.notInclude(reason(JSON.stringify({ ...e, source: "a\nb" })), "\n")
  })
})

/** parseInstantMicros as it was (one Date.parse of the rebuilt text), the reference for the faster one. */
const parseWithDateParse = (text: string): number | undefined => {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(text)
  if (m === null) return undefined
  const [, y, mo, d, h, mi, s, frac = "", zone = "Z"] = m
  const year = Number(y)
  const month = Number(mo)
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  const days = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31
  if (month < 1 || month > 12 || Number(d) < 1 || Number(d) > days) return undefined
  if (Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return undefined
  if (zone !== "Z" && (Number(zone.slice(1, 3)) > 23 || Number(zone.slice(4, 6)) > 59)) return undefined
  const millis = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}${zone}`)
  return Number.isNaN(millis) ? undefined : millis * 1000 + Number(frac.padEnd(6, "0").slice(0, 6))
}

describe("parseInstantMicros (parsed once per message, so made cheap)", () => {
  it("agrees with Date.parse of the same instant, for valid and impossible dates, times and offsets", () => {
    const pad = (n: number, width = 2) => String(n).padStart(width, "0")
    const text = fc
      .tuple(
        fc.oneof(fc.integer({ min: 0, max: 9999 }), fc.integer({ min: 1960, max: 2100 })),
        fc.integer({ min: 0, max: 13 }),
        fc.integer({ min: 0, max: 32 }),
        fc.integer({ min: 0, max: 24 }),
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 0, max: 60 }),
        fc.option(fc.stringMatching(/^\d{1,9}$/)),
        fc.oneof(fc.constant("Z"), fc.tuple(fc.constantFrom("+", "-"), fc.integer({ min: 0, max: 24 }), fc.integer({ min: 0, max: 60 })).map(([sign, h, m]) => `${sign}${pad(h)}:${pad(m)}`))
      )
      .map(([y, mo, d, h, mi, s, frac, zone]) =>
        `${pad(y, 4)}-${pad(mo)}-${pad(d)}T${pad(h)}:${pad(mi)}:${pad(s)}${frac === null ? "" : `.${frac}`}${zone}`
      )
    fc.assert(fc.property(text, (t) => assert.strictEqual(parseInstantMicros(t), parseWithDateParse(t), t)), { numRuns: 20_000 })
    for (const t of ["0000-02-29T23:59:59.999999-23:59", "0099-12-31T00:00:00+00:00", "1900-02-29T00:00:00Z", "2000-02-29T12:00:00+14:00"]) {
      assert.strictEqual(parseInstantMicros(t), parseWithDateParse(t), t)
    }
  })
})
