import { HttpClient } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { afterAll, assert, beforeAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, ManagedRuntime, Stream } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { httpServer } from "../src/api/Http.js"
import { shortDecimal, TRADES_CSV_CHUNK_ROWS, tradesCsv } from "../src/bi/TradesCsv.js"
import { normalizeDecimal } from "../src/domain/Decimal.js"
import { formatInstantMicros, type TickerSymbol } from "../src/domain/Ticker.js"
import { type Trade, tradeJson, TRADE_WS_SOURCE } from "../src/domain/Trade.js"
import { Health } from "../src/status/Health.js"
import { sqliteStore } from "../src/store/Store.js"
import { TradeRepo } from "../src/store/TradeRepo.js"
import { apiOver } from "./support/apiRuntime.js"
import { STORE_KINDS } from "./support/stores.js"
import { insertTrades } from "./support/trades.js"

const trade = (symbol: string, id: number, timeMicros: number, price = "68001.20000000", quantity = "0.01500000"): Trade => ({
  symbol: symbol as TickerSymbol,
  id,
  price,
  quantity,
  firstTradeId: id * 3,
  lastTradeId: id * 3 + 2,
  timeMicros,
  isBuyerMaker: id % 2 === 0,
  source: TRADE_WS_SOURCE
})

const us = (iso: string) => Date.parse(iso) * 1000
const t0 = us("2026-01-15T14:03:22.913Z")
/** BTCUSDT: ids 3000000000.. ; 40 trades share the millisecond t0 (one taker order sweeping the book). */
const before = Array.from({ length: 10 }, (_, i) => trade("BTCUSDT", 3_000_000_000 + i, t0 - (10 - i) * 1000))
const sameMs = Array.from({ length: 40 }, (_, i) => trade("BTCUSDT", 3_000_000_010 + i, t0))
const after = Array.from({ length: 10 }, (_, i) => trade("BTCUSDT", 3_000_000_050 + i, t0 + (i + 1) * 1000, "68001.25000000", "1.00000000"))
const btc = [...before, ...sameMs, ...after]

describe.each(STORE_KINDS)("on %s", (kind) => {
  const { run, get, dispose } = apiOver(kind)

  beforeAll(async () => {
    await run(insertTrades([...btc, trade("BTCUSDT", 3_000_000_054 - 1000, us("2026-01-15T00:00:00Z") - 1)]))
  }, 60_000)
  afterAll(dispose)

  const expect400 = async (url: string, mentions: string) => {
    const res = await get(url)
    expect(res.status, url).toBe(400)
    expect(res.text, url).toContain(mentions)
  }

  describe("GET /agg-trades/latest", () => {
    it("is newest first, in the exact trades contract", async () => {
      const res = await get("/agg-trades/latest?symbol=BTCUSDT&limit=3")
      expect(res.status).toBe(200)
      expect(res.headers["content-type"]).toContain("application/json")
      expect(res.text).toBe(`[${[btc[59]!, btc[58]!, btc[57]!].map(tradeJson).join(",")}]`)
      const one = res.json()[1]
      expect(one).toEqual({
        symbol: "BTCUSDT",
        agg_trade_id: 3000000058,
        price: "68001.25000000",
        quantity: "1.00000000",
        first_trade_id: 9000000174,
        last_trade_id: 9000000176,
        trade_time: "2026-01-15T14:03:22.922000+00:00",
        is_buyer_maker: true,
        source: "binance_ws_aggTrade"
      })
    })

    it("gives 200 by default, [] for a configured symbol without trades, and the 400s of the other endpoints", async () => {
      expect((await get("/agg-trades/latest?symbol=BTCUSDT")).json().length).toBe(61)
      expect((await get("/agg-trades/latest?symbol=SOLUSDT")).json()).toEqual([])
      await expect400("/agg-trades/latest?symbol=BTCUSDT&limit=1001", "limit must be a whole number from 1 to 1000")
      await expect400("/agg-trades/latest?symbol=BTCUSDT&limit=0", "limit must be a whole number from 1 to 1000")
      await expect400("/agg-trades/latest?symbol=BTCUSDT&limit=1e3", "limit")
      await expect400("/agg-trades/latest?symbol=btcusdt", "expected a Binance symbol")
      await expect400("/agg-trades/latest?symbol=DOGEUSDT", "known symbols: BTCUSDT, ETHUSDT, SOLUSDT")
      await expect400("/agg-trades/latest", "symbol is missing")
    })
  })

  describe("GET /agg-trades/range", () => {
    const base = "/agg-trades/range?symbol=BTCUSDT&start=2026-01-15&end=2026-01-16"

    it("is start <= trade_time < end, in id order, 1000 per answer by default", async () => {
      const all = await get(base)
      expect(all.status).toBe(200)
      expect(all.text).toBe(`[${btc.map(tradeJson).join(",")}]`)
      expect(all.headers["x-next-cursor"]).toBeUndefined()
      const edge = await get(
        `/agg-trades/range?symbol=BTCUSDT&start=${formatInstantMicros(t0).replace("+", "%2B")}&end=${formatInstantMicros(t0 + 1000).replace("+", "%2B")}`
      )
      expect(edge.json().map((t: { agg_trade_id: number }) => t.agg_trade_id)).toEqual(sameMs.map((t) => t.id))
    })

    it("pages across trades sharing a millisecond without losing or repeating one", async () => {
      for (const limit of [1, 3, 7, 10, 13, 40, 59, 60]) {
        const ids: Array<number> = []
        let url: string | undefined = `${base}&limit=${limit}`
        let pages = 0
        while (url !== undefined) {
          const res = await get(url)
          expect(res.status).toBe(200)
          const page: Array<{ agg_trade_id: number }> = res.json()
          expect(page.length).toBeLessThanOrEqual(limit)
          ids.push(...page.map((t) => t.agg_trade_id))
          const cursor = res.headers["x-next-cursor"]
          if (cursor !== undefined) {
            expect(res.headers["link"]).toBe(`</agg-trades/range?symbol=BTCUSDT&start=2026-01-15&end=2026-01-16&limit=${limit}&cursor=${cursor}>; rel="next"`)
          }
          url = cursor === undefined ? undefined : `${base}&limit=${limit}&cursor=${cursor}`
          pages++
        }
        expect(ids, `limit=${limit}`).toEqual(btc.map((t) => t.id))
        expect(pages, `limit=${limit}`).toBe(Math.ceil(btc.length / limit))
      }
    })

    it("refuses a bad query as the other endpoints do", async () => {
      await expect400(`${base}&limit=5001`, "limit must be a whole number from 1 to 5000")
      await expect400(`${base}&limit=abc`, "limit must be a whole number from 1 to 5000")
      await expect400(`${base}&cursor=c123`, "cursor must be the x-next-cursor value of a previous answer")
      await expect400("/agg-trades/range?symbol=BTCUSDT&start=2026-01-16&end=2026-01-15", "start must be before end")
      await expect400("/agg-trades/range?symbol=BTCUSDT&start=2026-02-30&end=2026-03-02", "is not a date and time that exists")
      await expect400("/agg-trades/range?symbol=BTCUSDT&start=yesterday&end=2026-03-02", "expected an ISO-8601 date")
      await expect400("/agg-trades/range?symbol=BTCUSDT&end=2026-03-02", "start is missing")
    })
  })

  describe("GET /bi/trades.csv", () => {
    const header = "agg_trade_id,trade_time,symbol,price,quantity,first_trade_id,last_trade_id,is_buyer_maker\r\n"

    it("writes one UTC day by id with shortest decimals, an ETag, a 304, and a closed day cached for good", async () => {
      const res = await get("/bi/trades.csv?symbol=BTCUSDT&date=2026-01-15")
      expect(res.status).toBe(200)
      expect(res.headers["content-type"]).toBe("text/csv; charset=utf-8")
      expect(res.headers["cache-control"]).toBe("public, max-age=31536000, immutable")
      expect(res.headers["content-disposition"]).toBe('inline; filename="trades_BTCUSDT_2026-01-15.csv"')
      const lines = res.text.split("\r\n")
      expect(`${lines[0]}\r\n`).toBe(header)
      expect(lines.length).toBe(btc.length + 2) // header, rows, and the empty string after the last CRLF
      expect(lines[1]).toBe("3000000000,2026-01-15T14:03:22.903000+00:00,BTCUSDT,68001.2,0.015,9000000000,9000000002,true")
      expect(lines[60]).toBe("3000000059,2026-01-15T14:03:22.923000+00:00,BTCUSDT,68001.25,1,9000000177,9000000179,false")
      const etag = res.headers["etag"]!
      expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/)
      const again = await get("/bi/trades.csv?symbol=BTCUSDT&date=2026-01-15", { "if-none-match": etag })
      expect(again.status).toBe(304)
      expect(again.text).toBe("")
      expect(again.headers["etag"]).toBe(etag)
      expect(again.headers["cache-control"]).toBe("public, max-age=31536000, immutable")
      // the day before holds one trade: another body, another ETag
      const dayBefore = await get("/bi/trades.csv?symbol=BTCUSDT&date=2026-01-14")
      expect(dayBefore.text).toBe(`${header}2999999054,2026-01-14T23:59:59.999999+00:00,BTCUSDT,68001.2,0.015,8999997162,8999997164,true\r\n`)
      expect(dayBefore.headers["etag"]).not.toBe(etag)
    })

    it("changes its ETag when a trade of the day arrives, and is not immutable while a repair is pending", async () => {
      const url = "/bi/trades.csv?symbol=ETHUSDT&date=2026-01-15"
      await run(insertTrades([trade("ETHUSDT", 10, us("2026-01-15T01:00:00Z")), trade("ETHUSDT", 12, us("2026-01-15T01:00:02Z"))]))
      const first = await get(url)
      await run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`
        INSERT INTO trade_gaps (symbol, from_id, to_id, state, detected_at) VALUES ('ETHUSDT', 11, 11, 'missing', '2026-01-15T01:00:03Z')`))
      const pending = await get(url, { "if-none-match": first.headers["etag"]! })
      expect(pending.status).toBe(304)
      expect(pending.headers["cache-control"]).toBe("public, max-age=300")
      await run(insertTrades([trade("ETHUSDT", 11, us("2026-01-15T01:00:01Z"))]))
      const repaired = await get(url, { "if-none-match": first.headers["etag"]! })
      expect(repaired.status).toBe(200)
      expect(repaired.text.split("\r\n").slice(1, 4).map((l) => l.split(",")[0])).toEqual(["10", "11", "12"])
    })

    it("answers the header alone for a day without trades, and today with the daily reports' max-age", async () => {
      const empty = await get("/bi/trades.csv?symbol=SOLUSDT&date=2026-01-15")
      expect(empty.status).toBe(200)
      expect(empty.text).toBe(header)
      expect(empty.headers["cache-control"]).toBe("public, max-age=300")
      const today = new Date().toISOString().slice(0, 10)
      await run(insertTrades([trade("SOLUSDT", 1, Date.now() * 1000 - 1000)]))
      const live = await get(`/bi/trades.csv?symbol=SOLUSDT&date=${today}`)
      expect(live.text.split("\r\n").length).toBe(3)
      expect(live.headers["cache-control"]).toBe("public, max-age=300")
    })

    it("refuses a bad date or symbol", async () => {
      await expect400("/bi/trades.csv?symbol=BTCUSDT&date=2026-02-30", "date must be a UTC date YYYY-MM-DD that exists")
      await expect400("/bi/trades.csv?symbol=BTCUSDT&date=2026-01-15T00:00:00Z", "date must be a UTC date")
      await expect400("/bi/trades.csv?symbol=BTCUSDT", "date is missing")
      await expect400("/bi/trades.csv?symbol=DOGEUSDT&date=2026-01-15", "known symbols")
    })

    it("streams a busy day: 200,000 trades, all of them once and in order, read a chunk at a time", async () => {
      const day = us("2026-01-16T00:00:00Z")
      // 200k trades, four per millisecond, ids 5e9.. : inserted by SQLite itself
      await run(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 199999)
        INSERT INTO trades SELECT 'ETHUSDT', 5000000000 + i, '3000.' || (i % 100) || '000', '0.50000000', i, i, CAST(${day} AS BIGINT) + (i / 4) * 1000, i % 2, 'binance_ws_aggTrade' FROM n`))
      const res = await run(
        Effect.gen(function* () {
          const response = yield* (yield* HttpClient.HttpClient).get("/bi/trades.csv?symbol=ETHUSDT&date=2026-01-16")
          return { headers: response.headers, text: yield* response.text }
        }).pipe(Effect.scoped)
      )
      expect(res.headers["transfer-encoding"]).toBe("chunked")
      expect(res.headers["content-length"]).toBeUndefined()
      const lines = res.text.split("\r\n")
      expect(lines.length).toBe(200_002)
      for (let i = 0; i < 200_000; i += 1) {
        const line = lines[i + 1]!
        if (!line.startsWith(`${5_000_000_000 + i},`)) assert.fail(`row ${i + 1} is ${line}`)
      }
      expect(lines[200_000]).toBe(`5000199999,${formatInstantMicros(day + 49_999_000)},ETHUSDT,3000.99,0.5,199999,199999,true`)
      // the body is read from SQLite a chunk at a time as it is sent, not built whole
      const chunks = await run(
        Effect.flatMap(TradeRepo, (repo) => tradesCsv(repo, "ETHUSDT", "2026-01-16", Date.now())).pipe(Effect.flatMap((csv) => Stream.runCount(csv.body)))
      )
      expect(chunks).toBe(1 + 200_000 / TRADES_CSV_CHUNK_ROWS)
    }, 60_000)
  })

  describe("the trades endpoints in /openapi.json", () => {
    it("lists the paths and the trades contract", async () => {
      const doc = (await get("/openapi.json")).json()
      for (const route of ["/agg-trades/latest", "/agg-trades/range", "/coverage", "/bi/trades.csv"]) {
        expect(doc.paths[route]?.get, route).toBeDefined()
        expect(doc.paths[route].get.security, route).toEqual([{ apiKey: [] }])
      }
      const schema = doc.components.schemas.AggTrade
      expect(Object.keys(schema.properties)).toEqual([
        "symbol",
        "agg_trade_id",
        "price",
        "quantity",
        "first_trade_id",
        "last_trade_id",
        "trade_time",
        "is_buyer_maker",
        "source"
      ])
      expect(JSON.stringify(doc.paths["/agg-trades/range"].get.responses["200"])).toContain("#/components/schemas/AggTrade")
      expect(doc.components.schemas.Coverage).toBeDefined()
    })
  })
})

describe("the trades endpoints behind API keys", () => {
  const KEY = "plain-key-0123456789abcdef"
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "trades-api-keyed-"))
  const keyedDb = path.join(dir, "keyed.db")
  const keyed = ManagedRuntime.make(
    httpServer(NodeHttpServer.layerTest).pipe(
      Layer.provideMerge(Health.Default),
      Layer.provideMerge(sqliteStore(keyedDb)),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["SYMBOLS", "BTCUSDT"], ["API_KEYS", KEY]]))))
    )
  )
  afterAll(async () => {
    await keyed.dispose()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  const keyedGet = (url: string, headers: Record<string, string> = {}) =>
    keyed.runPromise(
      Effect.gen(function* () {
        const res = yield* (yield* HttpClient.HttpClient).get(url, { headers })
        return { status: res.status, headers: res.headers }
      }).pipe(Effect.scoped)
    )

  it("refuse a request without the key, and make the CSV's caching private", async () => {
    for (const url of [
      "/agg-trades/latest?symbol=BTCUSDT",
      "/agg-trades/range?symbol=BTCUSDT&start=2026-01-15&end=2026-01-16",
      "/coverage?symbol=BTCUSDT",
      "/bi/trades.csv?symbol=BTCUSDT&date=2026-01-15"
    ]) {
      expect((await keyedGet(url)).status, url).toBe(401)
    }
    expect((await keyedGet("/agg-trades/latest?symbol=BTCUSDT", { "x-api-key": KEY })).status).toBe(200)
    const csv = await keyedGet("/bi/trades.csv?symbol=BTCUSDT&date=2026-01-15", { "x-api-key": KEY })
    expect(csv.status).toBe(200)
    expect(csv.headers["cache-control"]).toBe("private, max-age=300")
  })
})

describe("shortest decimals", () => {
  it("writes what normalizeDecimal writes", () => {
    for (const s of ["68001.20000000", "0.01500000", "0.00000000", "100", "100.000", "0", "-0.0", "007.50", "0.5", "-12.3400", "10", "1.0", "00", "-00.010"]) {
      expect(shortDecimal(s), s).toBe(normalizeDecimal(s))
    }
  })
})
