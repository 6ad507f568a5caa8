/**
 * The trade history's stores: TradeWriter (idempotent trades, exact gaps, settling them), the JSONL
 * trades log (day files by trade time, no duplicates across writes and restarts, all-or-nothing
 * appends on a real full disk) and the bar sink (closed klines through CandleRepo).
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer } from "effect"
import type { TickerSymbol } from "../src/domain/Ticker.js"
import { type Trade, TRADE_REST_SOURCE, TRADE_WS_SOURCE, tradeJson } from "../src/domain/Trade.js"
import { CandleRepo } from "../src/store/CandleRepo.js"
import { sqliteLayer } from "../src/store/Sql.js"
import { TradeIds } from "../src/store/TradeIds.js"
import { makeBarSink, makeJsonlTradeSink, makeSqliteTradeSink } from "../src/store/TradeSinks.js"
import { TradeWriter } from "../src/store/TradeWriter.js"
import { us } from "./support/events.js"
import { STORE_KINDS, withStore } from "./support/stores.js"
import { fillDisk, freeDisk, tmpfsScoped } from "./support/tmpfs.js"

const t0 = us("2026-01-15T14:00:00Z")

/** Aggregate trade `id` of `symbol`, `id` ms after 14:00 unless given a time. */
const trade = (symbol: string, id: number, micros = t0 + id * 1000): Trade => ({
  symbol: symbol as TickerSymbol,
  id,
  price: `${68000 + (id % 100)}.20000000`,
  quantity: "0.01500000",
  firstTradeId: id * 3,
  lastTradeId: id * 3 + 2,
  timeMicros: micros,
  isBuyerMaker: id % 2 === 0,
  source: TRADE_WS_SOURCE
})
const trades = (symbol: string, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => trade(symbol, from + i))

type Deps = TradeWriter | CandleRepo | SqlClient.SqlClient

/** A migrated SQLite database at `file`. */
const withSqliteFile = <A, E>(f: Effect.Effect<A, E, Deps>, file: string) =>
  f.pipe(Effect.provide(Layer.mergeAll(TradeWriter.Default, CandleRepo.Default).pipe(Layer.provideMerge(sqliteLayer(file)))))

const gapRows = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  return yield* sql<{ symbol: string; from_id: number; to_id: number; state: string; reason: string | null; resolved_at: string | null }>`
    SELECT symbol, from_id, to_id, state, reason, resolved_at FROM trade_gaps ORDER BY symbol, from_id`
})

const tradeCount = Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number }>`SELECT COUNT(*) AS n FROM trades`).pipe(
  Effect.map(([row]) => row!.n)
)

describe.each(STORE_KINDS)("TradeWriter on %s", (kind) => {
  const withDb = withStore(kind)

  it.effect("stores each trade once by (symbol, id), with every contract field", () =>
    withDb(
      Effect.gen(function* () {
        const writer = yield* TradeWriter
        const sql = yield* SqlClient.SqlClient
        const batch = [...trades("BTCUSDT", 1, 5), ...trades("ETHUSDT", 1, 3)]
        assert.deepStrictEqual(yield* writer.storeBatch(batch), { stored: 8, gaps: [] })
        assert.deepStrictEqual(yield* writer.storeBatch(batch), { stored: 0, gaps: [] })
        assert.deepStrictEqual(yield* writer.storeBatch([...batch].reverse()), { stored: 0, gaps: [] })
        // a repeat inside one batch is stored once
        assert.deepStrictEqual(yield* writer.storeBatch([trade("BTCUSDT", 6), trade("BTCUSDT", 6)]), { stored: 1, gaps: [] })
        assert.strictEqual(yield* tradeCount, 9)
        const [row] = yield* sql`SELECT * FROM trades WHERE symbol = 'BTCUSDT' AND agg_trade_id = 2`
        const expected = { symbol: "BTCUSDT", agg_trade_id: 2, price: "68002.20000000", quantity: "0.01500000", first_trade_id: 6 }
        assert.deepStrictEqual(row, { ...expected, last_trade_id: 8, trade_time_us: t0 + 2000, is_buyer_maker: 1, source: TRADE_WS_SOURCE })
        assert.strictEqual(yield* writer.storedIdsIn("BTCUSDT", 2, 4), 3)
        assert.strictEqual(yield* writer.storedIdsIn("BTCUSDT", 5, 100), 2)
        assert.strictEqual(yield* writer.storedIdsIn("SOLUSDT", 0, 100), 0)
      })
    )
  )

  it.effect("records a gap exactly; redeliveries and the late trades themselves open none", () =>
    withDb(
      Effect.gen(function* () {
        const writer = yield* TradeWriter
        yield* writer.storeBatch(trades("BTCUSDT", 1, 5))
        const { gaps, stored } = yield* writer.storeBatch([trade("BTCUSDT", 9)])
        assert.strictEqual(stored, 1)
        assert.deepStrictEqual(gaps, [{ symbol: "BTCUSDT", fromId: 6, toId: 8 }])
        // everything delivered so far, again
        assert.deepStrictEqual(yield* writer.storeBatch([...trades("BTCUSDT", 1, 5), trade("BTCUSDT", 9)]), { stored: 0, gaps: [] })
        // the missing trades arrive (a repair): below the newest stored id, so no gap
        assert.deepStrictEqual(yield* writer.storeBatch(trades("BTCUSDT", 6, 8)), { stored: 3, gaps: [] })
        assert.strictEqual(yield* writer.storedIdsIn("BTCUSDT", 6, 8), 3)
        // the gap stays open until the repairer settles it
        const open = yield* writer.openGaps
        assert.deepStrictEqual(open.map(({ detectedAt: _, ...gap }) => gap), [{ symbol: "BTCUSDT", fromId: 6, toId: 8 }])
        assert.match(open[0]!.detectedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
      })
    )
  )

  it.effect("a symbol's history starts at its first trade; later jumps, in or across batches and out of order, are gaps", () =>
    withDb(
      Effect.gen(function* () {
        const writer = yield* TradeWriter
        // first trades of BTC (from 1000, with a hole in the batch) and of ETH
        const first = yield* writer.storeBatch([trade("BTCUSDT", 1003), trade("ETHUSDT", 50), trade("BTCUSDT", 1000), trade("BTCUSDT", 1001)])
        assert.deepStrictEqual(first, { stored: 4, gaps: [{ symbol: "BTCUSDT", fromId: 1002, toId: 1002 }] })
        // out of order within a batch: sorted by id first, so 1005 and 1006 only close in on 1004
        const next = yield* writer.storeBatch([trade("BTCUSDT", 1006), trade("ETHUSDT", 51), trade("BTCUSDT", 1005), trade("ETHUSDT", 60)])
        assert.deepStrictEqual(next.gaps, [
          { symbol: "BTCUSDT", fromId: 1004, toId: 1004 },
          { symbol: "ETHUSDT", fromId: 52, toId: 59 }
        ])
        // older ids than the first stored one (a backfill) open nothing
        assert.deepStrictEqual(yield* writer.storeBatch(trades("BTCUSDT", 990, 995)), { stored: 6, gaps: [] })
        const open = (yield* writer.openGaps).map((g) => [g.symbol, g.fromId, g.toId])
        assert.deepStrictEqual(open, [["BTCUSDT", 1002, 1002], ["BTCUSDT", 1004, 1004], ["ETHUSDT", 52, 59]])
      })
    )
  )

  it.effect("settling a gap splits it into repaired, unrepairable and still-missing rows", () =>
    withDb(
      Effect.gen(function* () {
        const writer = yield* TradeWriter
        yield* writer.storeBatch([trade("BTCUSDT", 9), trade("ETHUSDT", 1)])
        yield* writer.storeBatch([trade("BTCUSDT", 101), trade("ETHUSDT", 5)])
        const [gap] = (yield* writer.openGaps).filter((g) => g.symbol === "BTCUSDT")
        assert.deepStrictEqual([gap!.fromId, gap!.toId], [10, 100])
        const at = "2026-01-15T15:00:00.000Z"
        const parts = [
          { fromId: 50, toId: 59, state: "unrepairable", reason: "Binance answered no trades" },
          { fromId: 20, toId: 29, state: "repaired" }
        ] as const
        yield* writer.settleGap(gap!, parts, at)
        assert.deepStrictEqual(
          (yield* gapRows).filter((r) => r.symbol === "BTCUSDT"),
          [
            { symbol: "BTCUSDT", from_id: 10, to_id: 19, state: "missing", reason: null, resolved_at: null },
            { symbol: "BTCUSDT", from_id: 20, to_id: 29, state: "repaired", reason: null, resolved_at: at },
            { symbol: "BTCUSDT", from_id: 30, to_id: 49, state: "missing", reason: null, resolved_at: null },
            { symbol: "BTCUSDT", from_id: 50, to_id: 59, state: "unrepairable", reason: "Binance answered no trades", resolved_at: at },
            { symbol: "BTCUSDT", from_id: 60, to_id: 100, state: "missing", reason: null, resolved_at: null }
          ]
        )
        // the leftovers keep the gap's detection time; the other symbol's gap is untouched
        const open = yield* writer.openGaps
        const ranges = open.map((g) => [g.symbol, g.fromId, g.toId])
        assert.deepStrictEqual(ranges, [["BTCUSDT", 10, 19], ["BTCUSDT", 30, 49], ["BTCUSDT", 60, 100], ["ETHUSDT", 2, 4]])
        assert.isTrue(open.every((g) => g.detectedAt === gap!.detectedAt))

        // a whole gap settled at once; settling it again (another process did) changes nothing
        const eth = open[3]!
        yield* writer.settleGap(eth, [{ fromId: 2, toId: 4, state: "repaired" }], at)
        yield* writer.settleGap(eth, [{ fromId: 2, toId: 4, state: "unrepairable", reason: "late" }], at)
        assert.deepStrictEqual(
          (yield* gapRows).filter((r) => r.symbol === "ETHUSDT"),
          [{ symbol: "ETHUSDT", from_id: 2, to_id: 4, state: "repaired", reason: null, resolved_at: at }]
        )

        // parts outside the gap or overlapping are a programming error, and change nothing
        const before = yield* gapRows
        const repaired = (fromId: number, toId: number) => ({ fromId, toId, state: "repaired" as const })
        for (const parts of [[repaired(5, 12)], [repaired(95, 101)], [repaired(61, 70), repaired(70, 80)], [repaired(70, 65)]]) {
          const exit = yield* Effect.exit(writer.settleGap({ symbol: "BTCUSDT", fromId: 60, toId: 100 }, parts, at))
          assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause), `not a defect: ${JSON.stringify(parts)}`)
        }
        assert.deepStrictEqual(yield* gapRows, before)
      })
    )
  )

})

describe("TradeWriter on SQLite, on a full disk", () => {
  it.scoped("a batch that hits SQLITE_FULL is rolled back whole, gaps included; the retry stores it once", () =>
    Effect.gen(function* () {
      const mount = yield* tmpfsScoped("2m")
      const filler = join(mount, "filler")
      yield* withSqliteFile(
        Effect.gen(function* () {
          const writer = yield* TradeWriter
          yield* writer.storeBatch(trades("BTCUSDT", 1, 100))
          fillDisk(filler)
          let failedAt = -1
          let next = 1000
          for (let b = 0; b < 200 && failedAt < 0; b++) {
            // each batch jumps ahead: a gap per batch
            const exit = yield* Effect.exit(writer.storeBatch(trades("BTCUSDT", next, next + 199)))
            if (Exit.isFailure(exit)) {
              failedAt = next
              // a failure to retry (not a defect), for a full disk
              const failure = Cause.failureOption(exit.cause)
              assert.isTrue(failure._tag === "Some", Cause.pretty(exit.cause))
              assert.match(String((failure as { value: { cause: unknown } }).value.cause), /full/i)
            } else next += 300
          }
          assert.isAbove(failedAt, 0, "no batch failed although the disk was full")
          const stored = yield* tradeCount
          const gaps = (yield* gapRows).length
          assert.strictEqual(yield* writer.storedIdsIn("BTCUSDT", failedAt, failedAt + 199), 0, "the failed batch was not rolled back")

          freeDisk(filler)
          const retried = yield* writer.storeBatch(trades("BTCUSDT", failedAt, failedAt + 199))
          assert.strictEqual(retried.stored, 200)
          assert.strictEqual(retried.gaps.length, 1)
          assert.strictEqual(yield* tradeCount, stored + 200)
          assert.strictEqual((yield* gapRows).length, gaps + 1)
        }),
        join(mount, "db", "app.db")
      )
    }).pipe(Effect.provide(NodeContext.layer))
  )
})

describe.each(STORE_KINDS)("the store's trade sink on %s", (kind) => {
  const withDb = withStore(kind)
  it.effect("stores through TradeWriter and stays idempotent", () =>
    withDb(
      Effect.gen(function* () {
        const sink = yield* makeSqliteTradeSink
        assert.strictEqual(sink.name, `${kind}-trades`)
        yield* sink.writeBatch(trades("BTCUSDT", 1, 5))
        yield* sink.writeBatch([...trades("BTCUSDT", 3, 5), trade("BTCUSDT", 9)])
        assert.strictEqual(yield* tradeCount, 6)
        assert.deepStrictEqual((yield* gapRows).map((r) => [r.from_id, r.to_id, r.state]), [[6, 8, "missing"]])
      })
    )
  )
})

describe("TradeIds", () => {
  it("remembers ids as ranges, in any order, and forgets what a failed append added", () => {
    const ids = new TradeIds(1000)
    for (let id = 1; id <= 100_000; id++) assert.isTrue(ids.add("BTCUSDT", id))
    assert.strictEqual(ids.ranges, 1)
    assert.isFalse(ids.add("BTCUSDT", 50_000))
    // a hole, then its repair out of order: back to one range
    assert.isTrue(ids.add("BTCUSDT", 100_005))
    assert.isTrue(ids.add("BTCUSDT", 100_003))
    assert.strictEqual(ids.ranges, 3)
    for (const id of [100_004, 100_001, 100_002]) assert.isTrue(ids.add("BTCUSDT", id))
    assert.strictEqual(ids.ranges, 1)
    ids.remove("BTCUSDT", 50_000)
    assert.isFalse(ids.has("BTCUSDT", 50_000))
    assert.isTrue(ids.has("BTCUSDT", 49_999) && ids.has("BTCUSDT", 50_001))
    assert.strictEqual(ids.ranges, 2)
    assert.isTrue(ids.add("BTCUSDT", 50_000))
    assert.isFalse(ids.has("ETHUSDT", 1))
    assert.strictEqual(ids.ranges, 1)
  })

  it("is bounded by ranges; a symbol's newest range is never forgotten", () => {
    const ids = new TradeIds(100)
    // every other id: one range each
    for (let id = 0; id < 2000; id += 2) ids.add("BTCUSDT", id)
    assert.isAtMost(ids.ranges, 100)
    assert.isTrue(ids.has("BTCUSDT", 1998))
    assert.isFalse(ids.has("BTCUSDT", 0))
  })
})

/** The identities on the lines of a day file, in file order. */
const ids = (file: string) =>
  readFileSync(file, "utf8").trimEnd().split("\n").map((line) => {
    const t = JSON.parse(line) as { symbol: string; agg_trade_id: number }
    return `${t.symbol}:${t.agg_trade_id}`
  })

describe("the JSONL trade sink", () => {
  it.scoped("appends one contract trade per line to RAW_DIR/trades/YYYY-MM-DD.jsonl by the UTC day of its trade time", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const raw = join(yield* fs.makeTempDirectoryScoped(), "raw")
      const sink = yield* makeJsonlTradeSink(raw)
      assert.strictEqual(sink.name, "jsonl-trades")
      const late = trade("BTCUSDT", 1, us("2026-01-15T23:59:59.999Z") + 999)
      const next = trade("BTCUSDT", 2, us("2026-01-16T00:00:00Z"))
      const eth: Trade = { ...trade("ETHUSDT", 7, us("2026-01-16T00:00:01Z")), source: TRADE_REST_SOURCE }
      yield* sink.writeBatch([late, next, eth])
      assert.deepStrictEqual((yield* fs.readDirectory(join(raw, "trades"))).sort(), ["2026-01-15.jsonl", "2026-01-16.jsonl"])
      const day1 = readFileSync(join(raw, "trades", "2026-01-15.jsonl"), "utf8")
      assert.strictEqual(day1, `${tradeJson(late)}\n`)
      assert.include(day1, '"trade_time":"2026-01-15T23:59:59.999999+00:00"')
      assert.strictEqual(readFileSync(join(raw, "trades", "2026-01-16.jsonl"), "utf8"), `${tradeJson(next)}\n${tradeJson(eth)}\n`)
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("never appends a trade twice: within a batch, across writes, after a restart, and for repairs appended later", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const raw = yield* fs.makeTempDirectoryScoped()
      const file = join(raw, "trades", "2026-01-15.jsonl")
      const first = yield* makeJsonlTradeSink(raw)
      yield* first.writeBatch([...trades("BTCUSDT", 1, 5), trade("BTCUSDT", 3), ...trades("ETHUSDT", 1, 2)])
      yield* first.writeBatch([...trades("BTCUSDT", 4, 7), trade("BTCUSDT", 10)])
      assert.deepStrictEqual(ids(file), ["BTCUSDT:1", "BTCUSDT:2", "BTCUSDT:3", "BTCUSDT:4", "BTCUSDT:5", "ETHUSDT:1", "ETHUSDT:2", "BTCUSDT:6", "BTCUSDT:7", "BTCUSDT:10"])

      // a restart: the day file is read back, so redeliveries are recognised; the repaired 8..9 are appended
      const restarted = yield* makeJsonlTradeSink(raw)
      yield* restarted.writeBatch([...trades("BTCUSDT", 1, 10), ...trades("ETHUSDT", 1, 3)])
      assert.deepStrictEqual(ids(file).slice(10), ["BTCUSDT:8", "BTCUSDT:9", "ETHUSDT:3"])
      const again = yield* makeJsonlTradeSink(raw)
      yield* again.writeBatch([...trades("BTCUSDT", 1, 10), ...trades("ETHUSDT", 1, 3)])
      assert.strictEqual(ids(file).length, 13)
      assert.strictEqual(new Set(ids(file)).size, 13)
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("after a crash, cuts off a torn last line and appends the trade it held once", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const raw = yield* fs.makeTempDirectoryScoped()
      yield* fs.makeDirectory(join(raw, "trades"))
      const file = join(raw, "trades", "2026-01-15.jsonl")
      writeFileSync(file, `${tradeJson(trade("BTCUSDT", 1))}\n${tradeJson(trade("BTCUSDT", 2)).slice(0, 40)}`)
      const sink = yield* makeJsonlTradeSink(raw)
      yield* sink.writeBatch(trades("BTCUSDT", 1, 3))
      assert.strictEqual(readFileSync(file, "utf8"), trades("BTCUSDT", 1, 3).map((t) => `${tradeJson(t)}\n`).join(""))
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("on a full disk a batch leaves the day file as it was; after space is freed the retry writes each trade once", () =>
    Effect.gen(function* () {
      const mount = yield* tmpfsScoped("256k")
      const raw = join(mount, "raw")
      const file = join(raw, "trades", "2026-01-15.jsonl")
      const filler = join(mount, "filler")
      const sink = yield* makeJsonlTradeSink(raw)
      yield* sink.writeBatch(trades("BTCUSDT", 1, 20))
      const before = readFileSync(file)

      // 5 trades already written and 300 new ones (~70 KiB) against ~8 KiB of free space
      const batch = trades("BTCUSDT", 16, 320)
      fillDisk(filler, 8 * 1024)
      for (let attempt = 1; attempt <= 2; attempt++) {
        const error = yield* Effect.flip(sink.writeBatch(batch))
        assert.strictEqual(error.sink, "jsonl-trades")
        assert.match(error.message, /no space left on device/i)
        assert.isTrue(readFileSync(file).equals(before), `failed attempt ${attempt} changed the day file`)
      }

      freeDisk(filler)
      yield* sink.writeBatch(batch)
      const written = ids(file)
      assert.strictEqual(written.length, 320)
      assert.strictEqual(new Set(written).size, 320)
      assert.isTrue(readFileSync(file, "utf8").endsWith("\n"))
    }).pipe(Effect.provide(NodeContext.layer))
  )
})

describe.each(STORE_KINDS)("the bar sink on %s", (kind) => {
  const withDb = withStore(kind)
  it.effect("stores a closed 1m kline as a klines candle, once, with its day rebuilt", () =>
    withDb(
      Effect.gen(function* () {
        const sink = yield* makeBarSink
        const candles = yield* CandleRepo
        assert.strictEqual(sink.name, `${kind}-bars`)
        const kline = { symbol: "BTCUSDT", interval: "1m" as const, openTime: Date.UTC(2026, 0, 15, 14, 3), trades: 321, closed: true,
          open: "68000.10000000", high: "68010.00000000", low: "67990.00000000", close: "68001.20000000",
          volume: "12.50000000", quoteVolume: "850000.00000000" }
        yield* sink.writeBatch([kline])
        yield* sink.writeBatch([kline])
        const minutes = yield* candles.candles("BTCUSDT", "1m", Date.UTC(2026, 0, 15), Date.UTC(2026, 0, 16))
        assert.deepStrictEqual(minutes.map((c) => ({ ...c })), [kline])
        const daily = yield* candles.daily("BTCUSDT", "2026-01-15", "2026-01-15")
        const { close, high, low, open, volume } = kline
        assert.deepStrictEqual(daily.map((d) => [d.open, d.high, d.low, d.close, d.volume, d.source]), [[open, high, low, close, volume, "klines"]])
      })
    )
  )
})
