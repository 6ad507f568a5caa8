import { HttpClient } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, assert, beforeAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, ManagedRuntime, TestClock } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { AnswerCache } from "../src/api/AnswerCache.js"
import { httpServer } from "../src/api/Http.js"
import { BiReports } from "../src/bi/BiReports.js"
import type { Candle } from "../src/domain/Candles.js"
import { Health } from "../src/status/Health.js"
import { CandleRepo } from "../src/store/CandleRepo.js"
import { sqliteStore } from "../src/store/Store.js"
import { TickWriter } from "../src/store/TickWriter.js"
import { toTick } from "../src/domain/Ticker.js"
import { makeEvent, us } from "./support/events.js"
import { STORE_KINDS, type StoreKind, withStore } from "./support/stores.js"

const day = (date: string, open: string, high: string, low: string, close: string, volume: string, closed = true): Candle => ({
  symbol: "BTCUSDT",
  interval: "1d",
  openTime: Date.parse(`${date}T00:00:00Z`),
  open,
  high,
  low,
  close,
  volume,
  quoteVolume: (Number(volume) * 100).toFixed(8),
  trades: 10,
  closed
})

/** A known dataset: five days of BTCUSDT, the last one still open, and two ticks. */
const dataset = [
  day("2026-03-01", "95.00000000", "101.00000000", "94.50000000", "100.00000000", "10.50000000"),
  day("2026-03-02", "100.00000000", "111.00000000", "99.00000000", "110.00000000", "20.00000000"),
  day("2026-03-03", "110.00000000", "112.00000000", "98.00000000", "99.00000000", "30.25000000"),
  day("2026-03-04", "99.00000000", "106.00000000", "98.50000000", "105.00000000", "40.00000000"),
  day("2026-03-05", "105.00000000", "108.00000000", "104.00000000", "107.50000000", "5.00000000", false)
]
const ticks = [
  { ...makeEvent("BTCUSDT", us("2026-03-05T11:59:00Z"), "107.40000000"), volume: "24567.12300000" },
  { ...makeEvent("BTCUSDT", us("2026-03-05T12:00:00Z"), "107.50000000"), priceChangePercent: "-1.870" },
  makeEvent("ETHUSDT", us("2026-03-05T12:00:00Z"), "2000.10000000")
]

/** Runs `f` on a fresh store of `kind` holding the dataset. */
const withDataIn =
  (kind: StoreKind) =>
  <A, E>(f: Effect.Effect<A, E, BiReports>) =>
    withStore(kind)(
      Effect.gen(function* () {
        yield* TestClock.setTime(Date.parse("2026-03-05T12:00:00Z"))
        yield* (yield* CandleRepo).upsert(dataset, "klines")
        yield* (yield* TickWriter).insertMany(ticks.map(toTick))
        return yield* Effect.provide(f, BiReports.Default)
      })
    )

describe.each(STORE_KINDS)("BI CSV contracts on a known dataset (%s)", (kind) => {
  const withData = withDataIn(kind)

  it.effect("daily_ohlc.csv, byte for byte", () =>
    withData(
      Effect.gen(function* () {
        const csv = yield* (yield* BiReports).dailyOhlc("BTCUSDT", 3)
        assert.strictEqual(
          csv,
          "date,symbol,open,high,low,close,volume\r\n" +
            "2026-03-03,BTCUSDT,110,112,98,99,30.25\r\n" +
            "2026-03-04,BTCUSDT,99,106,98.5,105,40\r\n" +
            "2026-03-05,BTCUSDT,105,108,104,107.5,5\r\n"
        )
      })
    )
  )

  it.effect("daily_volume.csv, byte for byte", () =>
    withData(
      Effect.gen(function* () {
        const csv = yield* (yield* BiReports).dailyVolume("BTCUSDT", 2)
        assert.strictEqual(
          csv,
          "date,symbol,volume,quote_volume\r\n2026-03-04,BTCUSDT,40,4000\r\n2026-03-05,BTCUSDT,5,500\r\n"
        )
      })
    )
  )

  it.effect("daily_features.csv: log returns by hand, volatility empty until there is enough history", () =>
    withData(
      Effect.gen(function* () {
        const csv = yield* (yield* BiReports).dailyFeatures("BTCUSDT", 4)
        // ln(110/100) = 0.0953101798, ln(99/110) = -0.1053605157, ln(105/99) = 0.0588405, ln(107.5/105) = 0.0235304974
        assert.strictEqual(
          csv,
          "date,symbol,close,log_return,volatility_7d,volatility_30d\r\n" +
            "2026-03-02,BTCUSDT,110,0.0953101798,,\r\n" +
            "2026-03-03,BTCUSDT,99,-0.1053605157,,\r\n" +
            "2026-03-04,BTCUSDT,105,0.0588405,,\r\n" +
            "2026-03-05,BTCUSDT,107.5,0.0235304974,,\r\n"
        )
      })
    )
  )

  it.effect("latest_prices.csv, byte for byte, in the order asked", () =>
    withData(
      Effect.gen(function* () {
        const csv = yield* (yield* BiReports).latestPrices(["ETHUSDT", "BTCUSDT", "SOLUSDT"])
        assert.strictEqual(
          csv,
          "symbol,last_price,price_change_percent,volume,timestamp_utc\r\n" +
            "ETHUSDT,2000.1,1.25,1000.5,2026-03-05T12:00:00.000000+00:00\r\n" +
            "BTCUSDT,107.5,-1.87,1000.5,2026-03-05T12:00:00.000000+00:00\r\n"
        )
      })
    )
  )

  it.effect("keeps the header when there are no rows", () =>
    withData(
      Effect.gen(function* () {
        const reports = yield* BiReports
        assert.strictEqual(yield* reports.dailyOhlc("SOLUSDT", 90), "date,symbol,open,high,low,close,volume\r\n")
        assert.strictEqual(
          yield* reports.dailyFeatures("SOLUSDT", 90),
          "date,symbol,close,log_return,volatility_7d,volatility_30d\r\n"
        )
      })
    )
  )
})

describe("BI endpoints over a real socket", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bi-test-"))
  const runtime = ManagedRuntime.make(
    httpServer(NodeHttpServer.layerTest).pipe(
      Layer.provideMerge(Health.Default),
      Layer.provideMerge(sqliteStore(path.join(dir, "app.db"))),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["SYMBOLS", "BTCUSDT,ETHUSDT,SOLUSDT"]]))))
    )
  )
  const get = (url: string, headers: Record<string, string> = {}) =>
    runtime.runPromise(
      Effect.gen(function* () {
        const res = yield* (yield* HttpClient.HttpClient).get(url, { headers })
        return { status: res.status, headers: res.headers, text: yield* res.text }
      }).pipe(Effect.scoped)
    )
  const today = new Date().toISOString().slice(0, 10)

  /** 120 one-minute klines from 2026-01-10 00:00 UTC: open i, high i+2, low i−1 (floored at 0), close i+1, volume 1. */
  const minutes: Array<Candle> = Array.from({ length: 120 }, (_, i) => ({
    symbol: "BTCUSDT",
    interval: "1m",
    openTime: Date.UTC(2026, 0, 10) + i * 60_000,
    open: `${i}.00000000`,
    high: `${i + 2}.00000000`,
    low: `${Math.max(0, i - 1)}.00000000`,
    close: `${i + 1}.00000000`,
    volume: "1.00000000",
    quoteVolume: "2.00000000",
    trades: 1,
    closed: true
  }))
  beforeAll(async () => {
    await runtime.runPromise(
      Effect.flatMap(CandleRepo, (repo) =>
        Effect.zipRight(
          repo.upsert([day(today, "1.00000000", "2.00000000", "0.50000000", "1.50000000", "3.00000000", false)], "klines"),
          repo.upsert(minutes, "klines")
        )
      )
    )
  })
  afterAll(async () => {
    await runtime.dispose()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("serves text/csv with Cache-Control and an ETag, and 304 for a matching If-None-Match", async () => {
    const first = await get("/bi/daily_ohlc.csv?symbol=BTCUSDT&days=1")
    expect(first.status).toBe(200)
    expect(first.headers["content-type"]).toBe("text/csv; charset=utf-8")
    expect(first.headers["cache-control"]).toBe("public, max-age=300")
    expect(first.text).toBe(`date,symbol,open,high,low,close,volume\r\n${today},BTCUSDT,1,2,0.5,1.5,3\r\n`)
    const etag = first.headers["etag"]!
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/)
    const again = await get("/bi/daily_ohlc.csv?symbol=BTCUSDT&days=1", { "if-none-match": etag })
    expect(again.status).toBe(304)
    expect(again.text).toBe("")
    expect(again.headers["etag"]).toBe(etag)
    const other = await get("/bi/daily_ohlc.csv?symbol=BTCUSDT&days=1", { "if-none-match": '"stale"' })
    expect(other.status).toBe(200)
    const volume = await get("/bi/daily_volume.csv?symbol=BTCUSDT&days=1")
    expect(volume.headers["etag"]).not.toBe(etag)
  })

  it("answers If-None-Match for a kept report with 304 without building it, and builds it again after new data", async () => {
    const cache = await runtime.runPromise(AnswerCache)
    const url = "/bi/daily_volume.csv?symbol=ETHUSDT&days=2"
    const store = (volume: string) =>
      runtime.runPromise(Effect.flatMap(CandleRepo, (repo) => repo.upsert([{ ...day(today, "1.0", "2.0", "0.5", "1.5", volume, false), symbol: "ETHUSDT" }], "klines")))
    await store("3.00000000")
    const first = await get(url)
    expect(first.status).toBe(200)
    const etag = first.headers["etag"]!
    const hits = cache.size().hits
    const notModified = await get(url, { "if-none-match": etag })
    expect(notModified.status).toBe(304)
    expect(notModified.headers["cache-control"]).toBe("public, max-age=300")
    expect(cache.size().hits).toBe(hits + 1) // the kept answer's ETag: no report was built
    await store("4.00000000")
    const changed = await get(url, { "if-none-match": etag })
    expect(changed.status).toBe(200)
    expect(changed.text).toContain(`${today},ETHUSDT,4,`)
    expect(changed.headers["etag"]).not.toBe(etag)
    expect(cache.size().hits).toBe(hits + 1)
  })

  it("answers the fixed header for a configured symbol without data", async () => {
    const res = await get("/bi/daily_features.csv?symbol=SOLUSDT")
    expect(res.status).toBe(200)
    expect(res.text).toBe("date,symbol,close,log_return,volatility_7d,volatility_30d\r\n")
    const latest = await get("/bi/latest_prices.csv")
    expect(latest.status).toBe(200)
    expect(latest.headers["cache-control"]).toBe("public, max-age=15")
    expect(latest.text).toBe("symbol,last_price,price_change_percent,volume,timestamp_utc\r\n")
  })

  it("rejects bad parameters with a 400 that explains them", async () => {
    const cases: Array<[string, string]> = [
      ["/bi/daily_ohlc.csv?symbol=BTCUSDT&days=0", "days must be a whole number from 1 to 3650"],
      ["/bi/daily_ohlc.csv?symbol=BTCUSDT&days=3651", "days must be a whole number from 1 to 3650"],
      ["/bi/daily_volume.csv?symbol=BTCUSDT&days=week", "days"],
      ["/bi/daily_volume.csv", "symbol"],
      ["/bi/daily_features.csv?symbol=DOGEUSDT", "no data for symbol DOGEUSDT"],
      ["/bi/latest_prices.csv?symbols=BTCUSDT,eth%20usdt", "upper case"],
      ["/bi/latest_prices.csv?symbols=BTCUSDT,NOPEUSDT", "no data for symbol NOPEUSDT"]
    ]
    for (const [url, message] of cases) {
      const res = await get(url)
      expect(res.status, url).toBe(400)
      expect(res.text, url).toContain(message)
    }
  })

  it("serves candles as JSON, rolling 1m klines up to 5m and 1h, and 1d from the daily layer", async () => {
    const url = (interval: string, start: string, end: string) =>
      `/candles?symbol=BTCUSDT&interval=${interval}&start=${start}&end=${end}`
    const oneMinute = JSON.parse((await get(url("1m", "2026-01-10T00:00:00Z", "2026-01-10T00:03:00Z"))).text)
    expect(oneMinute.map((c: { open_time: string }) => c.open_time)).toEqual([
      "2026-01-10T00:00:00.000Z",
      "2026-01-10T00:01:00.000Z",
      "2026-01-10T00:02:00.000Z"
    ])
    const five = JSON.parse((await get(url("5m", "2026-01-10T00:00:00Z", "2026-01-10T01:00:00Z"))).text)
    expect(five.length).toBe(12)
    // minutes 5..9: open 5, high max(7..11) = 11, low min(4..8) = 4, close 10, volume 5
    expect(five[1]).toEqual({
      symbol: "BTCUSDT",
      interval: "5m",
      open_time: "2026-01-10T00:05:00.000Z",
      open: "5.00000000",
      high: "11.00000000",
      low: "4.00000000",
      close: "10.00000000",
      volume: "5.00000000",
      quote_volume: "10.00000000",
      trades: 5,
      closed: true
    })
    const hours = JSON.parse((await get(url("1h", "2026-01-10", "2026-01-11"))).text)
    expect(hours.map((c: { open: string; close: string }) => [c.open, c.close])).toEqual([
      ["0.00000000", "60.00000000"],
      ["60.00000000", "120.00000000"]
    ])
    const daily = JSON.parse((await get(url("1d", "2026-01-10", "2026-01-11"))).text)
    expect(daily).toHaveLength(1)
    expect(daily[0]).toMatchObject({ interval: "1d", open: "0.00000000", high: "121.00000000", low: "0.00000000", close: "120.00000000", volume: "120.00000000" })
    const tooMany = await get(url("1m", "2026-01-01", "2026-02-01"))
    expect(tooMany.status).toBe(400)
    expect(tooMany.text).toContain("at most 5000 per answer")
  })

  it("serves daily features as JSON", async () => {
    const res = await get("/features/daily?symbol=BTCUSDT&days=1")
    expect(res.status).toBe(200)
    expect(JSON.parse(res.text)).toEqual([
      { date: today, symbol: "BTCUSDT", close: "1.50000000", log_return: null, volatility_7d: null, volatility_30d: null }
    ])
  })

  it("declares the candle's wire form in the OpenAPI document, as /candles answers it", async () => {
    const doc = JSON.parse((await get("/openapi.json")).text)
    const success = doc.paths["/candles"].get.responses["200"].content["application/json"].schema
    const item = success.items.$ref === undefined ? success.items : doc.components.schemas[success.items.$ref.split("/").pop()]
    expect(Object.keys(item.properties).sort()).toEqual(
      ["close", "closed", "high", "interval", "low", "open", "open_time", "quote_volume", "symbol", "trades", "volume"]
    )
    expect(item.properties.open_time.type).toBe("string")
    expect(item.properties.closed.type).toBe("boolean")
  })

  it("lists the BI endpoints in the OpenAPI document", async () => {
    const doc = JSON.parse((await get("/openapi.json")).text)
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(["/bi/daily_ohlc.csv", "/bi/daily_volume.csv", "/bi/latest_prices.csv", "/bi/daily_features.csv"])
    )
  })
})
