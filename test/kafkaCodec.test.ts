import { Either, FastCheck as fc, Schema } from "effect"
import { assert, describe, it } from "vitest"
import { barCodec } from "../src/broker/kafka/barCodec.js"
import { tickCodec } from "../src/broker/kafka/codec.js"
import { tradeCodec } from "../src/broker/kafka/tradeCodec.js"
import { Candle } from "../src/domain/Candles.js"
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
import { fromTradeEvent, TradeEvent, TradeEventJson, TradeSources } from "../src/domain/Trade.js"

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

/** The trades contract, the same way: the schema is the reference for the trade codec's fast path. */
const schemaDecodeTrade = (text: string) => Schema.decodeUnknownEither(TradeEventJson)(text).pipe(Either.map(fromTradeEvent))
const schemaEncodeTrade = Schema.encodeSync(TradeEventJson)

const tradeId = fc.oneof(fc.integer({ min: 0, max: 2 ** 31 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }))
const tradeEvent: fc.Arbitrary<TradeEvent> = fc.record({
  symbol: fc.stringMatching(symbolPattern).map((s) => s as TickerSymbol),
  agg_trade_id: tradeId,
  price: fc.stringMatching(decimalPattern),
  quantity: fc.stringMatching(decimalPattern),
  first_trade_id: tradeId,
  last_trade_id: tradeId,
  trade_time: instant,
  is_buyer_maker: fc.boolean(),
  source: fc.constantFrom(...TradeSources)
})
const tradeFields = [...Object.keys(TradeEvent.fields), "extra"]
const brokenTradeValues: ReadonlyArray<unknown> = [
  ...brokenValues,
  -1,
  1.5,
  2 ** 53,
  Number.MAX_SAFE_INTEGER + 2,
  "3000000054",
  true,
  "true",
  "binance_ws_aggtrade",
  "simulated "
]
const nearTrade = fc
  .tuple(tradeEvent, fc.constantFrom(...tradeFields), fc.constantFrom(...brokenTradeValues))
  .map(([e, field, value]) => JSON.stringify({ ...e, [field]: value }))
const reasonOfTrade = (text: string) => Either.getLeft(tradeCodec.decode(text)).pipe((o) => (o._tag === "Some" ? o.value : ""))

describe("the trade codec of the Kafka adapter", () => {
  it("encodes (tradeJson, no Schema) exactly what Schema.encode(TradeEventJson) writes", () => {
    fc.assert(
      fc.property(tradeEvent, (e) => {
        const canonical = { ...e, trade_time: formatInstantMicros(parseInstantMicros(e.trade_time)!) }
        assert.strictEqual(tradeCodec.encode(fromTradeEvent(e)), schemaEncodeTrade(canonical))
        assert.strictEqual(tradeCodec.key(fromTradeEvent(e)), e.symbol)
      }),
      { numRuns: 500 }
    )
  })

  it("decodes what the schema accepts into the same Trade, and rejects exactly what it rejects", () => {
    const same = (text: string) => {
      const fast = tradeCodec.decode(text)
      const reference = schemaDecodeTrade(text)
      assert.strictEqual(fast._tag, reference._tag, text)
      if (Either.isRight(fast) && Either.isRight(reference)) assert.deepStrictEqual(fast.right, reference.right)
      if (Either.isLeft(fast)) assert.isAbove(fast.left.length, 0)
    }
    fc.assert(fc.property(tradeEvent, (e) => same(JSON.stringify(e))), { numRuns: 500 })
    fc.assert(fc.property(nearTrade, same), { numRuns: 3_000 })
    fc.assert(fc.property(garbage, same), { numRuns: 500 })
    // round trip: what the codec writes, it reads back as the same trade
    fc.assert(
      fc.property(tradeEvent, (e) => {
        const trade = fromTradeEvent(e)
        assert.deepStrictEqual(tradeCodec.decode(tradeCodec.encode(trade)), Either.right(trade))
      }),
      { numRuns: 300 }
    )
  })

  it("says why in one line: not JSON, or which field is wrong", () => {
    const e = {
      symbol: "BTCUSDT",
      agg_trade_id: 3_000_000_054,
      price: "68001.20000000",
      quantity: "0.01500000",
      first_trade_id: 27781,
      last_trade_id: 27783,
      trade_time: "2026-01-15T14:03:22.913000+00:00",
      is_buyer_maker: true,
      source: "binance_ws_aggTrade"
    }
    assert.isTrue(Either.isRight(tradeCodec.decode(JSON.stringify(e))))
    assert.include(reasonOfTrade("{not json"), "JSON")
    assert.include(reasonOfTrade(JSON.stringify({ ...e, price: 68001.2 })), "price")
    assert.include(reasonOfTrade(JSON.stringify({ ...e, agg_trade_id: "3000000054" })), "agg_trade_id")
    assert.include(reasonOfTrade(JSON.stringify({ ...e, source: "elsewhere" })), "source")
    assert.notInclude(reasonOfTrade(JSON.stringify({ ...e, symbol: "a\nb" })), "\n")
  })
})

const encodeCandle = Schema.encodeSync(Candle)
const bar: fc.Arbitrary<Candle> = fc
  .record({
    symbol: fc.stringMatching(symbolPattern),
    minute: fc.integer({ min: 0, max: 60_000_000 }),
    open: fc.stringMatching(/^\d{1,6}(\.\d{1,8})?$/),
    high: fc.stringMatching(/^\d{1,6}(\.\d{1,8})?$/),
    low: fc.stringMatching(/^\d{1,6}(\.\d{1,8})?$/),
    close: fc.stringMatching(/^\d{1,6}(\.\d{1,8})?$/),
    volume: fc.stringMatching(/^\d{1,6}(\.\d{1,8})?$/),
    quoteVolume: fc.stringMatching(/^\d{1,6}(\.\d{1,8})?$/),
    trades: fc.nat()
  })
  .map(({ minute, ...rest }) => ({ ...rest, interval: "1m" as const, openTime: minute * 60_000, closed: true }))

describe("the bar codec of the Kafka adapter", () => {
  it("writes the Candle's encoded JSON, keyed by symbol, and reads it back as the same candle", () => {
    fc.assert(
      fc.property(bar, (c) => {
        const text = barCodec.encode(c)
        assert.strictEqual(text, JSON.stringify(encodeCandle(new Candle(c))))
        assert.strictEqual(barCodec.key(c), c.symbol)
        assert.deepStrictEqual(barCodec.decode(text), Either.right(c))
      }),
      { numRuns: 300 }
    )
  })

  it("rejects, with the reason, what is not a closed bar of a Binance symbol", () => {
    const c = {
      symbol: "BTCUSDT",
      interval: "1m" as const,
      openTime: Date.UTC(2026, 0, 15, 14, 3),
      open: "68000.10",
      high: "68010.00",
      low: "67990.00",
      close: "68001.20",
      volume: "12.5",
      quoteVolume: "850000.00",
      trades: 1200,
      closed: true
    }
    const wire = encodeCandle(new Candle(c)) as Record<string, unknown>
    const reason = (doc: unknown) => Either.getLeft(barCodec.decode(typeof doc === "string" ? doc : JSON.stringify(doc)))
    assert.isTrue(Either.isRight(barCodec.decode(JSON.stringify(wire))))
    const cases: ReadonlyArray<readonly [unknown, string]> = [
      ["{not json", "JSON"],
      [{ ...wire, open_time: "yesterday" }, "open_time"],
      [{ ...wire, open_time: "2026-01-15T14:03:30.000Z" }, "open_time"],
      [{ ...wire, close: "high" }, "close"],
      [{ ...wire, volume: "-1" }, "volume"],
      [{ ...wire, symbol: "btc usdt" }, "symbol"],
      [{ ...wire, interval: "2m" }, "interval"],
      [{ ...wire, trades: 1.5 }, "trades"],
      [{ ...wire, closed: false }, "closed"],
      [{ ...wire, quote_volume: undefined }, "quote_volume"]
    ]
    for (const [doc, field] of cases) {
      const why = reason(doc)
      assert.isTrue(why._tag === "Some", `accepted ${JSON.stringify(doc)}`)
      if (why._tag === "Some") {
        assert.include(why.value, field)
        assert.notInclude(why.value, "\n")
      }
    }
  })
})
