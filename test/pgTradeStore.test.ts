/**
 * The PostgreSQL trade store against the SQLite one: the same answers, byte for byte. Then several
 * writers on one database, as consumers in several processes during a Kafka rebalance: every trade is
 * stored once, and the gaps recorded are those of some serial order of the batches (the per-symbol
 * advisory lock), never a mix of two.
 */
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import { type Trade, TRADE_REST_SOURCE } from "../src/domain/Trade.js"
import { LiveReads } from "../src/store/LiveReads.js"
import { PgTradeWriterLive } from "../src/store/pg/PgTradeWriter.js"
import { pgLayer } from "../src/store/pg/PgSql.js"
import { TradeRepo } from "../src/store/TradeRepo.js"
import { type StoredTrades, TradeWriter } from "../src/store/TradeWriter.js"
import { freshStore, type StoreKind, withStore } from "./support/stores.js"
import { plainTrade } from "./support/trades.js"

const trade = (symbol: string, id: number): Trade => plainTrade(symbol, id, 1_768_485_600_000_000 + id * 1000)
const trades = (symbol: string, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => trade(symbol, from + i))

/** A writer on a pool of its own: another process. */
const writerAt = (url: string) =>
  Effect.map(Layer.build(Layer.provideMerge(PgTradeWriterLive, pgLayer(url, 4))), (context) => ({
    writer: Context.get(context, TradeWriter),
    sql: Context.get(context, SqlClient.SqlClient)
  }))

const ranges = (results: ReadonlyArray<StoredTrades>) =>
  results
    .flatMap((r) => r.gaps)
    .map((g) => `${g.fromId}..${g.toId}`)
    .sort()

/** Trades with the values that could be spelled differently: ids past 2^32, µs instants, both flags, both sources. */
const edgeTrades: ReadonlyArray<Trade> = [
  ...trades("BTCUSDT", 4_294_967_290, 4_294_967_300),
  { ...trade("BTCUSDT", 4_294_967_305), timeMicros: 1_768_485_600_000_005, isBuyerMaker: true, source: TRADE_REST_SOURCE },
  { ...trade("BTCUSDT", 4_294_967_306), timeMicros: 1_768_485_600_000_005, price: "0.00000001", quantity: "123456789.12345678" },
  { ...trade("ETHUSDT", 7), timeMicros: 86_400_000_000 * 20_000 + 999_999, isBuyerMaker: true }
]

/** Everything the trade reads and the live reads answer over `edgeTrades` and a few ticks. */
const answers = (kind: StoreKind) =>
  withStore(kind)(
    Effect.gen(function* () {
      const writer = yield* TradeWriter
      const repo = yield* TradeRepo
      const live = yield* LiveReads
      const sql = yield* SqlClient.SqlClient
      const stored = yield* writer.storeBatch(edgeTrades)
      for (const [ts, eventTime] of [[1_768_485_600_000_000, null], [1_768_485_600_123_456, "2026-01-15T14:00:00.123456+00:00"]] as const) {
        yield* sql`INSERT INTO ticks (symbol, ts_us, timestamp_utc, last_price, price_change_percent, volume, source, event_time, ingested_at)
          VALUES ('BTCUSDT', ${ts}, '2026-01-15T14:00:00.000000+00:00', '68000.1', '-1.5', '12.5', 'binance_api_v3_ticker_24hr', ${eventTime}, 'x')`
      }
      const pages: Array<unknown> = []
      for (let cursor = undefined as Parameters<typeof repo.rangeJson>[4], more = true; more; ) {
        const page = yield* repo.rangeJson("BTCUSDT", 0, 2 ** 52, 4, cursor)
        pages.push(page)
        more = page.more
        cursor = page.last ?? undefined
      }
      return {
        stored,
        latest: yield* repo.latestJson("BTCUSDT", 5),
        pages,
        scan: yield* repo.scan("BTCUSDT", 0, 2 ** 52, 4_294_967_280),
        csv: yield* repo.csvRows("BTCUSDT", 0, 2 ** 52, 0, 2 ** 40, 100),
        first: yield* repo.firstTrade("ETHUSDT"),
        before: yield* repo.lastTradeBefore("BTCUSDT", 1_768_485_600_000_005),
        none: yield* repo.firstTrade("SOLUSDT"),
        gaps: yield* repo.gaps("BTCUSDT", null),
        pending: yield* repo.pendingGap("BTCUSDT", 4_294_967_301, 4_294_967_301),
        symbols: yield* repo.symbols,
        liveSymbols: yield* live.symbols,
        newest: yield* live.newest("BTCUSDT"),
        liveTrades: yield* live.tradesAfter("BTCUSDT", 0, 100),
        liveTicks: yield* live.ticksAfter("BTCUSDT", 0, 100)
      }
    })
  )

describe("the PostgreSQL trade store", () => {
  it.effect("answers every read as the SQLite store does, byte for byte", () =>
    Effect.gen(function* () {
      const sqlite = yield* answers("sqlite")
      const postgres = yield* answers("postgres")
      assert.deepStrictEqual(postgres, sqlite)
      // and what they agree on is right
      assert.deepStrictEqual(sqlite.stored.gaps, [{ symbol: "BTCUSDT", fromId: 4_294_967_301, toId: 4_294_967_304 }])
      assert.isTrue(sqlite.pending)
      assert.strictEqual(sqlite.pages.length, 4)
      assert.deepStrictEqual(sqlite.first, Option.some({ id: 7, timeMicros: 86_400_000_000 * 20_000 + 999_999 }))
      assert.include(sqlite.liveTrades.at(-1)!.json, '"trade_time":"2026-01-15T14:00:00.000005+00:00","is_buyer_maker":false')
      assert.notInclude(sqlite.liveTicks[0]!.json, "event_time")
      assert.include(sqlite.liveTicks[1]!.json, '"event_time":"2026-01-15T14:00:00.123456+00:00"}')
    })
  )
})

describe("the PostgreSQL trade writer, two writers at once", () => {
  it.scoped("store overlapping batches of one symbol once each, with the gaps of the hole only", () =>
    Effect.gen(function* () {
      const store = yield* freshStore("postgres")
      const [a, b] = [yield* writerAt(store.location), yield* writerAt(store.location)]
      // the same stream cut into different batches (one writer redelivers what the other took), ids 501..599 never traded
      const ids = [...trades("BTCUSDT", 1, 500), ...trades("BTCUSDT", 600, 2000)]
      const cut = (size: number, offset: number) =>
        Array.from({ length: Math.ceil((ids.length + offset) / size) }, (_, i) => ids.slice(Math.max(0, i * size - offset), (i + 1) * size - offset))
      const results = yield* Effect.all(
        [Effect.forEach(cut(100, 0), (batch) => a.writer.storeBatch(batch)), Effect.forEach(cut(170, 35), (batch) => b.writer.storeBatch(batch))],
        { concurrency: 2 }
      )
      const all = results.flat()
      assert.strictEqual(
        all.reduce((n, r) => n + r.stored, 0),
        ids.length,
        "every trade stored by exactly one of the writers"
      )
      assert.deepStrictEqual(ranges(all), ["501..599"])
      const [row] = yield* a.sql`SELECT count(*) AS n, count(DISTINCT agg_trade_id) AS d FROM trades`
      assert.deepStrictEqual(row, { n: ids.length, d: ids.length })
      assert.deepStrictEqual(
        (yield* a.writer.openGaps).map((g) => [g.symbol, g.fromId, g.toId]),
        [["BTCUSDT", 501, 599]]
      )
    })
  )

  it.scoped("serialise the gap detection of a symbol: the gaps are those of one order of the two batches", () =>
    Effect.gen(function* () {
      const store = yield* freshStore("postgres")
      const [a, b] = [yield* writerAt(store.location), yield* writerAt(store.location)]
      for (let round = 0; round < 40; round++) {
        const symbol = `R${String.fromCharCode(65 + (round % 26))}${Math.floor(round / 26)}USDT`
        yield* a.writer.storeBatch(trades(symbol, 1, 300))
        // A brings 302..400 (301 is late), B brings the late 301 and jumps to 450..500
        const results = yield* Effect.all(
          [a.writer.storeBatch(trades(symbol, 302, 400)), b.writer.storeBatch([trade(symbol, 301), ...trades(symbol, 450, 500)])],
          { concurrency: 2 }
        )
        const found = ranges(results)
        // A then B: 301 missing, then 401..449; B then A: 302..449 (A's ids are below B's newest then)
        const serial = [["301..301", "401..449"], ["302..449"]].map((gaps) => JSON.stringify(gaps))
        assert.include(serial, JSON.stringify(found), `round ${round}: ${JSON.stringify(found)}`)
        assert.strictEqual(yield* a.writer.storedIdsIn(symbol, 1, 500), 300 + 99 + 1 + 51)
      }
    })
  )
})
