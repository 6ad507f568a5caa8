import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import {
  aggregate,
  Candle,
  candlesFromTicks,
  candlesJson,
  fromKlineRow,
  type Interval,
  intervalMs,
  Intervals,
  mergeCandleSources
} from "../src/domain/Candles.js"
import { TickerEvent } from "../src/domain/Ticker.js"

const T0 = Date.UTC(2024, 0, 1) // 2024-01-01T00:00:00Z = 1704067200000
const MIN = 60_000

const candle = (
  symbol: string,
  interval: Interval,
  openTime: number,
  [open, high, low, close]: readonly [string, string, string, string],
  volume: string,
  quoteVolume: string,
  trades: number,
  closed = true
): Candle => ({ symbol, interval, openTime, open, high, low, close, volume, quoteVolume, trades, closed })

const m1 = (minute: number, ohlc: readonly [string, string, string, string], v: string, qv: string, trades: number, closed = true) =>
  candle("BTCUSDT", "1m", T0 + minute * MIN, ohlc, v, qv, trades, closed)

// 2023-12-31 23:58 .. 2024-01-01 00:06, the last minute still open.
const c2358 = m1(-2, ["100.00000000", "101.50000000", "99.50000000", "101.00000000"], "1.50000000", "150.75000000", 10)
const c2359 = m1(-1, ["101.00000000", "102.00000000", "100.50000000", "101.25000000"], "2.25000000", "228.00000000", 12)
const c0000 = m1(0, ["101.25000000", "103.00000000", "101.00000000", "102.50000000"], "0.10000001", "10.25000102", 5)
const c0001 = m1(1, ["102.50000000", "102.75000000", "100.00000000", "100.25000000"], "3.00000000", "301.50000000", 7)
const c0002 = m1(2, ["100.25000000", "100.50000000", "99.75000000", "100.00000000"], "0.00000009", "0.00000900", 1)
const c0003 = m1(3, ["100.00000000", "104.00000000", "100.00000000", "103.75000000"], "1.00000000", "102.00000000", 2)
const c0004 = m1(4, ["103.75000000", "103.80000000", "103.10000000", "103.20000000"], "2.50000000", "258.75000000", 3)
const c0005 = m1(5, ["103.20000000", "103.30000000", "102.90000000", "103.00000000"], "1.00000000", "103.10000000", 4)
const c0006 = m1(6, ["103.00000000", "103.40000000", "102.95000000", "103.35000000"], "0.50000000", "51.60000000", 2, false)
const sorted = [c2358, c2359, c0000, c0001, c0002, c0003, c0004, c0005, c0006]

// Unsorted, with a stale copy of 00:01 that a later occurrence replaces.
const stale0001 = { ...c0001, close: "999.00000000", high: "999.00000000", volume: "50.00000000", trades: 99 }
const shuffled = [c0004, stale0001, c0006, c2359, c0000, c0003, c0001, c2358, c0005, c0002]

// Hand-computed buckets:
// 23:55 (and 23:00, 2023-12-31): 23:58, 23:59 → open 100.00, close 101.25, high max(101.50, 102.00) = 102.00,
//   low min(99.50, 100.50) = 99.50, volume 1.5 + 2.25 = 3.75, quote 150.75 + 228 = 378.75, trades 10 + 12 = 22.
const lastDecember = (interval: Interval, openTime: number) =>
  candle("BTCUSDT", interval, openTime, ["100.00000000", "102.00000000", "99.50000000", "101.25000000"], "3.75000000", "378.75000000", 22)
// 00:00 5m: 00:00..00:04 → open 101.25, close 103.20, high max(103, 102.75, 100.5, 104, 103.8) = 104.00,
//   low min(101, 100, 99.75, 100, 103.1) = 99.75, volume 0.10000001 + 3 + 0.00000009 + 1 + 2.5 = 6.60000010,
//   quote 10.25000102 + 301.5 + 0.000009 + 102 + 258.75 = 672.50001002, trades 5 + 7 + 1 + 2 + 3 = 18.
const fiveMin0000 = candle("BTCUSDT", "5m", T0, ["101.25000000", "104.00000000", "99.75000000", "103.20000000"], "6.60000010", "672.50001002", 18)
// 00:05 5m: 00:05, 00:06 (open) → open 103.20, close 103.35, high 103.40, low 102.90, volume 1.5,
//   quote 103.1 + 51.6 = 154.70, trades 6; its end 00:10 is after the data's end 00:07, so still open.
const fiveMin0005 = candle(
  "BTCUSDT",
  "5m",
  T0 + 5 * MIN,
  ["103.20000000", "103.40000000", "102.90000000", "103.35000000"],
  "1.50000000",
  "154.70000000",
  6,
  false
)
// 00:00 1h and 2024-01-01 1d: 00:00..00:06 → open 101.25, close 103.35, high 104.00, low 99.75,
//   volume 6.60000010 + 1.5 = 8.10000010, quote 672.50001002 + 154.7 = 827.20001002, trades 18 + 6 = 24, open.
const january = (interval: Interval) =>
  candle("BTCUSDT", interval, T0, ["101.25000000", "104.00000000", "99.75000000", "103.35000000"], "8.10000010", "827.20001002", 24, false)

describe("intervals", () => {
  it("knows their lengths", () => {
    expect(Intervals.map(intervalMs)).toEqual([60_000, 300_000, 3_600_000, 86_400_000])
  })
})

describe("aggregate", () => {
  it("rolls 1m up into 5m", () => {
    expect(aggregate(sorted, "5m")).toEqual([lastDecember("5m", T0 - 5 * MIN), fiveMin0000, fiveMin0005])
  })

  it("rolls 1m up into 1h", () => {
    expect(aggregate(sorted, "1h")).toEqual([lastDecember("1h", T0 - 60 * MIN), january("1h")])
  })

  it("rolls 1m up into 1d, aligned to UTC midnight", () => {
    expect(aggregate(sorted, "1d")).toEqual([lastDecember("1d", Date.UTC(2023, 11, 31)), january("1d")])
  })

  it("gives the same answer for unsorted input with duplicates, keeping the last occurrence", () => {
    for (const to of ["5m", "1h", "1d"] as const) expect(aggregate(shuffled, to)).toEqual(aggregate(sorted, to))
  })

  it("chains: 1m → 5m → 1h equals 1m → 1h", () => {
    expect(aggregate(aggregate(sorted, "5m"), "1h")).toEqual(aggregate(sorted, "1h"))
  })

  it("closes a bucket whose end is exactly the data's end", () => {
    expect(aggregate([c2359, c2358], "5m")).toEqual([lastDecember("5m", T0 - 5 * MIN)])
  })

  it("keeps a bucket open while one of its candles is open, even when its end has passed", () => {
    const withOpenMiddle = sorted.map((c) => (c === c0002 ? { ...c, closed: false } : c))
    expect(aggregate(withOpenMiddle, "5m").map((c) => c.closed)).toEqual([true, false, false])
  })

  it("closes a bucket whose time has run out even when its own data stops early", () => {
    // 00:00 bucket without 00:03, 00:04: the series runs on to 00:07, so the bucket has ended.
    const gappy = sorted.filter((c) => c !== c0003 && c !== c0004)
    const [, bucket] = aggregate(gappy, "5m")
    expect(bucket).toMatchObject({ openTime: T0, close: "100.00000000", closed: true, trades: 13 })
  })

  it("groups by symbol and sorts by symbol then openTime", () => {
    const eth0 = candle("ETHUSDT", "1m", T0, ["2300.1", "2301", "2299", "2300.5"], "10", "23005", 3)
    const eth1 = candle("ETHUSDT", "1m", T0 + MIN, ["2300.5", "2302.25", "2300", "2302"], "0.5", "1151", 1)
    const out = aggregate([eth1, ...shuffled, eth0], "5m")
    expect(out.map((c) => `${c.symbol}@${(c.openTime - T0) / MIN}`)).toEqual(["BTCUSDT@-5", "BTCUSDT@0", "BTCUSDT@5", "ETHUSDT@0"])
    // ETH's only bucket: its end 00:05 is after its data's end 00:02, so open.
    expect(out[3]).toEqual(candle("ETHUSDT", "5m", T0, ["2300.1", "2302.25", "2299", "2302"], "10.5", "24156", 4, false))
  })

  it("returns nothing for nothing", () => {
    expect(aggregate([], "1d")).toEqual([])
  })

  it("refuses a target that is not coarser", () => {
    expect(() => aggregate(sorted, "1m")).toThrow(RangeError)
    expect(() => aggregate([], "1m")).toThrow(RangeError)
    const fives = aggregate(sorted, "5m")
    expect(() => aggregate(fives, "5m")).toThrow(/coarser/)
    expect(() => aggregate(aggregate(sorted, "1h"), "5m")).toThrow(/coarser/)
  })

  it("refuses one symbol with mixed intervals", () => {
    expect(() => aggregate([c0000, fiveMin0000], "1h")).toThrow(/mixes/)
  })
})

describe("fromKlineRow", () => {
  const day = Date.UTC(2017, 6, 3) // 1499040000000, the doc example's open time
  const row = [day, "0.01634790", "0.80000000", "0.01575800", "0.01577100", "148976.11427815", day + 86_400_000 - 1, "2434.19055334", 308, "1756.87402397", "28.46694368", "0"]

  it("parses a Binance kline row", () => {
    const parsed = fromKlineRow("BNBBTC", "1d", row, day + 86_400_000)
    expect(parsed).toEqual(
      Either.right(
        candle("BNBBTC", "1d", day, ["0.01634790", "0.80000000", "0.01575800", "0.01577100"], "148976.11427815", "2434.19055334", 308, true)
      )
    )
  })

  it("is open until nowMs passes closeTime", () => {
    const closeTime = day + 86_400_000 - 1
    const closed = (now: number) => Either.map(fromKlineRow("BNBBTC", "1d", row, now), (c) => c.closed)
    expect(closed(closeTime)).toEqual(Either.right(false))
    expect(closed(closeTime + 1)).toEqual(Either.right(true))
  })

  it("ignores extra trailing elements", () => {
    expect(Either.isRight(fromKlineRow("BNBBTC", "1d", [...row, "new field"], 0))).toBe(true)
  })

  const broken: ReadonlyArray<readonly [string, unknown, RegExp]> = [
    ["not an array", { openTime: day }, /array/],
    ["too short", row.slice(0, 11), /12 elements/],
    ["a price as a number", row.map((x, i) => (i === 1 ? 0.0163479 : x)), /field 1 \(open\)/],
    ["an exponent", row.map((x, i) => (i === 4 ? "1e-2" : x)), /field 4 \(close\)/],
    ["a negative volume", row.map((x, i) => (i === 5 ? "-1.0" : x)), /field 5 \(volume\)/],
    ["a string open time", row.map((x, i) => (i === 0 ? String(day) : x)), /field 0 \(openTime\)/],
    ["an unaligned open time", row.map((x, i) => (i === 0 ? day + 1 : i === 6 ? day + 86_400_000 : x)), /aligned to 1d/],
    ["the week's close time of the doc example", row.map((x, i) => (i === 6 ? 1499644799999 : x)), /field 6 \(closeTime\)/],
    ["a fractional trade count", row.map((x, i) => (i === 8 ? 308.5 : x)), /field 8 \(trades\)/],
    ["a quote volume as null", row.map((x, i) => (i === 7 ? null : x)), /field 7 \(quoteVolume\)/],
    ["a high below the close", row.map((x, i) => (i === 2 ? "0.01577000" : x)), /field 2 \(high\)/],
    ["a low above the open", row.map((x, i) => (i === 3 ? "0.01700000" : x)), /field 3 \(low\)/]
  ]

  it.each(broken)("rejects %s with a reason", (_, bad, reason) => {
    const parsed = fromKlineRow("BNBBTC", "1d", bad, day)
    expect(Either.isLeft(parsed)).toBe(true)
    if (Either.isLeft(parsed)) expect(parsed.left).toMatch(reason)
  })

  it("rejects a symbol that is not Binance's spelling", () => {
    expect(fromKlineRow("bnb btc", "1d", row, day)).toEqual(Either.left('expected a Binance symbol such as BTCUSDT, got "bnb btc"'))
  })
})

const tick = (symbol: string, timestamp_utc: string, lastPrice: string): TickerEvent =>
  Schema.decodeUnknownSync(TickerEvent)({
    timestamp_utc,
    symbol,
    lastPrice,
    priceChangePercent: "1.0",
    volume: "24567.123",
    source: "binance_api_v3_ticker_24hr"
  })

describe("candlesFromTicks", () => {
  // Unsorted; one instant written with a +02:00 offset (00:00:10Z).
  const events = [
    tick("BTCUSDT", "2024-01-01T00:00:45+00:00", "99.90"),
    tick("BTCUSDT", "2024-01-01T00:01:20+00:00", "100.10"),
    tick("BTCUSDT", "2024-01-01T00:00:05.123456+00:00", "100.50"),
    tick("ETHUSDT", "2024-01-01T00:01:30+00:00", "2300.5"),
    tick("BTCUSDT", "2024-01-01T00:00:59.999999+00:00", "100.75"),
    tick("BTCUSDT", "2024-01-01T02:00:10+02:00", "102.00"),
    tick("BTCUSDT", "2024-01-01T00:02:10+00:00", "100.20"),
    tick("BTCUSDT", "2024-01-01T00:00:30+00:00", "101.25"),
    tick("BTCUSDT", "2024-01-01T00:01:00.000000+00:00", "100.80")
  ]
  const now = T0 + 2 * MIN + 30_000
  const priceOnly = (symbol: string, interval: Interval, openTime: number, ohlc: readonly [string, string, string, string], closed: boolean) =>
    candle(symbol, interval, openTime, ohlc, "0", "0", 0, closed)

  it("builds 1m price candles in time order, closed once their minute has passed", () => {
    // 00:00 by time: 100.50 (05.123456s), 102.00 (10s), 101.25 (30s), 99.90 (45s), 100.75 (59.999999s)
    // 00:01: 100.80 (0s), 100.10 (20s); 00:02: 100.20, still running at 00:02:30.
    expect(candlesFromTicks(events, "1m", now)).toEqual([
      priceOnly("BTCUSDT", "1m", T0, ["100.50", "102.00", "99.90", "100.75"], true),
      priceOnly("BTCUSDT", "1m", T0 + MIN, ["100.80", "100.80", "100.10", "100.10"], true),
      priceOnly("BTCUSDT", "1m", T0 + 2 * MIN, ["100.20", "100.20", "100.20", "100.20"], false),
      priceOnly("ETHUSDT", "1m", T0 + MIN, ["2300.5", "2300.5", "2300.5", "2300.5"], true)
    ])
  })

  it("closes a bucket exactly at its end", () => {
    expect(candlesFromTicks(events, "1m", T0 + 2 * MIN).map((c) => c.closed)).toEqual([true, true, false, true])
  })

  it("builds coarser buckets the same way", () => {
    expect(candlesFromTicks(events, "5m", now)).toEqual([
      priceOnly("BTCUSDT", "5m", T0, ["100.50", "102.00", "99.90", "100.20"], false),
      priceOnly("ETHUSDT", "5m", T0, ["2300.5", "2300.5", "2300.5", "2300.5"], false)
    ])
    expect(candlesFromTicks(events, "1d", T0 + 86_400_000)[0]).toEqual(
      priceOnly("BTCUSDT", "1d", T0, ["100.50", "102.00", "99.90", "100.20"], true)
    )
  })

  it("returns nothing for no events", () => {
    expect(candlesFromTicks([], "1m", now)).toEqual([])
  })
})

describe("mergeCandleSources", () => {
  const k = (minute: number, close: string, closed = true) =>
    candle("BTCUSDT", "1m", T0 + minute * MIN, [close, close, close, close], "1.0", "100.0", 1, closed)
  const d = (symbol: string, interval: Interval, minute: number, close: string) =>
    candle(symbol, interval, T0 + minute * MIN, [close, close, close, close], "0", "0", 0, true)

  it("lets klines win and fills only the gaps from derived candles", () => {
    const klines = [k(1, "101", false), k(0, "100")]
    const derived = [d("BTCUSDT", "1m", 3, "203"), d("BTCUSDT", "1m", 1, "201"), d("BTCUSDT", "1m", 2, "202"), d("BTCUSDT", "1m", 0, "200")]
    expect(mergeCandleSources(klines, derived)).toEqual([k(0, "100"), k(1, "101", false), d("BTCUSDT", "1m", 2, "202"), d("BTCUSDT", "1m", 3, "203")])
  })

  it("keys on symbol and interval too, and sorts by symbol, interval, openTime", () => {
    const klines = [k(0, "100")]
    const derived = [d("ETHUSDT", "1m", 0, "2300"), d("BTCUSDT", "5m", 0, "250"), d("BTCUSDT", "1m", 0, "200")]
    expect(mergeCandleSources(klines, derived)).toEqual([k(0, "100"), d("BTCUSDT", "5m", 0, "250"), d("ETHUSDT", "1m", 0, "2300")])
  })

  it("works with either side empty", () => {
    expect(mergeCandleSources([], [d("BTCUSDT", "1m", 0, "1")])).toEqual([d("BTCUSDT", "1m", 0, "1")])
    expect(mergeCandleSources([k(0, "1")], [])).toEqual([k(0, "1")])
  })
})

describe("the candle's wire form", () => {
  it("is the Candle class's encoded form: open_time as an ISO instant, quote_volume, closed as a boolean, nothing else", () => {
    const c = { ...m1(3, ["1.5", "2", "1", "1.75"], "10", "15.5", 7, false), source: "klines" }
    const wire = {
      symbol: "BTCUSDT",
      interval: "1m",
      open_time: "2024-01-01T00:03:00.000Z",
      open: "1.5",
      high: "2",
      low: "1",
      close: "1.75",
      volume: "10",
      quote_volume: "15.5",
      trades: 7,
      closed: false
    }
    expect(candlesJson([c])).toBe(JSON.stringify([wire]))
    expect(candlesJson([])).toBe("[]")
    const { source: _, ...plain } = c
    expect(Schema.decodeUnknownSync(Schema.Array(Candle))([wire])).toEqual([plain])
  })
})
