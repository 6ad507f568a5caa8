import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc, Schema } from "effect"
import { eventJson } from "../src/domain/EventJson.js"
import { formatInstantMicros, parseInstantMicros, TickerEvent, TickerEventJson } from "../src/domain/Ticker.js"

const seedEvent =
  '{"timestamp_utc":"2026-01-15T14:03:22.913852+00:00","symbol":"BTCUSDT","lastPrice":"68001.20","priceChangePercent":"1.87","volume":"24567.123","source":"binance_api_v3_ticker_24hr"}'

describe("the data contract", () => {
  it("decodes the seed's event and encodes it back byte for byte", () => {
    const event = Schema.decodeUnknownSync(TickerEventJson)(seedEvent)
    assert.strictEqual(event.lastPrice, "68001.20")
    assert.strictEqual(Schema.encodeSync(TickerEventJson)(event), seedEvent)
  })

  it("keeps prices as decimal strings and rejects numbers", () => {
    const asNumber = JSON.parse(seedEvent)
    asNumber.lastPrice = 68001.2
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(TickerEvent)(asNumber)))
    const notDecimal = { ...JSON.parse(seedEvent), volume: "1e5" }
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(TickerEvent)(notDecimal)))
  })

  it("rejects renamed or missing contract fields", () => {
    const { lastPrice, ...rest } = JSON.parse(seedEvent)
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(TickerEvent)({ ...rest, last_price: lastPrice })))
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(TickerEvent)({ ...JSON.parse(seedEvent), symbol: "btc usdt" })))
  })

  it("formats and parses instants to the microsecond", () => {
    const micros = parseInstantMicros("2026-01-15T14:03:22.913852+00:00")!
    assert.strictEqual(micros, Date.UTC(2026, 0, 15, 14, 3, 22, 913) * 1000 + 852)
    assert.strictEqual(formatInstantMicros(micros), "2026-01-15T14:03:22.913852+00:00")
    // Python's isoformat() drops the fraction when it is zero; offsets other than UTC are accepted too.
    assert.strictEqual(parseInstantMicros("2026-01-15T14:03:22+00:00"), Date.UTC(2026, 0, 15, 14, 3, 22) * 1000)
    assert.strictEqual(parseInstantMicros("2026-01-15T16:03:22.5+02:00"), Date.UTC(2026, 0, 15, 14, 3, 22, 500) * 1000)
    assert.isUndefined(parseInstantMicros("2026-01-15 14:03:22"))
    assert.isUndefined(parseInstantMicros("2026-01-15T14:03:22"))
  })
})

describe("eventJson (the JSONL line and the Kafka value of an event)", () => {
  const instant = fc.integer({ min: 0, max: 4_102_444_800_000_000 }).map(formatInstantMicros)
  const decimal = fc.stringMatching(/^-?\d{1,12}(\.\d{1,8})?$/)
  const events = fc.record(
    {
      timestamp_utc: instant,
      symbol: fc.stringMatching(/^[A-Z0-9]{2,30}$/),
      lastPrice: decimal,
      priceChangePercent: decimal,
      volume: decimal,
      // any valid source, quotes, backslashes and control characters included
      source: fc.oneof(fc.constantFrom("binance_api_v3_ticker_24hr", "simulated"), fc.string({ minLength: 1 }).filter((s) => s.trim() === s)),
      event_time: instant
    },
    { requiredKeys: ["timestamp_utc", "symbol", "lastPrice", "priceChangePercent", "volume", "source"] }
  )

  it("is JSON.stringify of the event in contract order, and decodes back to the same event", () =>
    fc.assert(
      fc.property(events, (e) => {
        const event = Schema.decodeUnknownSync(TickerEvent)(e)
        const { event_time, lastPrice, priceChangePercent, source, symbol, timestamp_utc, volume } = event
        const text = eventJson(event)
        assert.strictEqual(text, JSON.stringify({ timestamp_utc, symbol, lastPrice, priceChangePercent, volume, source, event_time }))
        assert.deepStrictEqual(Schema.decodeUnknownSync(TickerEventJson)(text), event)
      }),
      { numRuns: 500 }
    ))
})
