/**
 * The PostgreSQL tick store against the SQLite one: the same answers byte for byte (the API sends
 * the JSON pages as they come), the data version, and writers of several processes at once.
 */
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, TestClock } from "effect"
import type { Candle } from "../src/domain/Candles.js"
import { type Tick, toTick } from "../src/domain/Ticker.js"
import { CandleRepo } from "../src/store/CandleRepo.js"
import { postgresStore } from "../src/store/Store.js"
import { TickRepo } from "../src/store/TickRepo.js"
import { TickWriter } from "../src/store/TickWriter.js"
import { makeEvent, makeTick, us } from "./support/events.js"
import { createTestDatabase } from "./support/pg.js"
import { STORE_KINDS, withStore } from "./support/stores.js"

const t0 = us("2026-01-15T14:00:00Z")
const MINUTE_US = 60_000_000

describe("the PostgreSQL tick store answers as the SQLite one", () => {
  const events = [
    makeEvent("BTCUSDT", t0, "100.10"),
    { ...makeEvent("BTCUSDT", t0 + MINUTE_US, "100.30"), event_time: "2026-01-15T14:00:59.999000+00:00" },
    { ...makeEvent("BTCUSDT", t0 + 2 * MINUTE_US + 7, "100.40"), source: 'a "quoted" \\ source, é' },
    makeEvent("BTCUSDT", t0 + 3 * MINUTE_US, "99.00000000"),
    makeEvent("ETHUSDT", t0 + 1, "2000.20"),
    makeEvent("1000SATSUSDT", t0 + 2, "0.00031")
  ]
  const end = t0 + 10 * MINUTE_US

  const answers = Effect.gen(function* () {
    yield* (yield* TickWriter).insertMany(events.map(toTick))
    const repo = yield* TickRepo
    return {
      latest: yield* repo.latestJson("BTCUSDT", 3),
      latestAll: yield* repo.latestJson("BTCUSDT", 100),
      none: yield* repo.latestJson("SOLUSDT", 10),
      rangeMore: yield* repo.rangeJson("BTCUSDT", t0, end, 2),
      rangeExact: yield* repo.rangeJson("BTCUSDT", t0, end, 4),
      rangeAll: yield* repo.rangeJson("BTCUSDT", t0 + 1, end, 100),
      rangeNone: yield* repo.rangeJson("BTCUSDT", end, end + MINUTE_US, 100),
      events: yield* repo.latest("BTCUSDT", 100),
      range: yield* repo.range("BTCUSDT", t0, t0 + 2 * MINUTE_US, 10),
      symbols: yield* repo.symbols,
      newest: yield* repo.newestMicros
    }
  })

  it.effect("latestJson, rangeJson, latest, range, symbols, newestMicros", () =>
    Effect.gen(function* () {
      const [sqlite, postgres] = yield* Effect.all([withStore("sqlite")(answers), withStore("postgres")(answers)])
      assert.deepStrictEqual(postgres, sqlite)
      // and the pages are what JSON.stringify makes of the events
      assert.strictEqual(sqlite.latestAll.json, JSON.stringify([...events.slice(0, 4)].reverse()))
      assert.deepStrictEqual(sqlite.latest, { json: JSON.stringify(events.slice(1, 4).reverse()), rows: 3, lastMicros: t0 + MINUTE_US, more: false })
      assert.deepStrictEqual(sqlite.none, { json: "[]", rows: 0, lastMicros: null, more: false })
      assert.deepStrictEqual([sqlite.rangeMore.more, sqlite.rangeExact.more, sqlite.rangeAll.more], [true, false, false])
      assert.strictEqual(sqlite.rangeAll.json, JSON.stringify(events.slice(1, 4)))
      assert.deepStrictEqual(sqlite.symbols.map((s) => s.symbol), ["1000SATSUSDT", "BTCUSDT", "ETHUSDT"])
      assert.strictEqual(sqlite.newest, t0 + 3 * MINUTE_US)
    })
  )
})

describe.each(STORE_KINDS)("the data version (%s)", (kind) => {
  it.effect("changes with every write", () =>
    withStore(kind)(
      Effect.gen(function* () {
        const repo = yield* TickRepo
        const writer = yield* TickWriter
        const before = yield* repo.dataVersion
        // PostgreSQL's snapshot is the server's: other test files' writes move it too
        if (kind === "sqlite") assert.strictEqual(yield* repo.dataVersion, before)
        yield* writer.insertMany([makeTick("BTCUSDT", t0)])
        const after = yield* repo.dataVersion
        assert.notStrictEqual(after, before)
        yield* writer.storeBatch([makeTick("BTCUSDT", t0 + 1)])
        assert.notStrictEqual(yield* repo.dataVersion, after)
      })
    )
  )
})

// ---- writers of several processes on one PostgreSQL database

const SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"] as const
/** 23:50 to 00:10 UTC: two days, minutes open and closed. */
const WINDOW_US = us("2026-01-15T23:50:00Z")
const NOW = Date.parse("2026-01-16T00:05:30Z")

/** Some identities repeat (a redelivery), always with the same price, so arrival order cannot matter. */
const allTicks: ReadonlyArray<Tick> = Array.from({ length: 1600 }, (_, i) => {
  const symbol = SYMBOLS[(i * 7) % SYMBOLS.length]!
  const second = (i * 7919) % 1200
  return makeTick(symbol, WINDOW_US + second * 1_000_000 + (i % 3), `${100 + ((second * 31) % 17)}.${String((second * 13) % 100).padStart(2, "0")}`)
})

/** `ticks` cut into batches of `size`, starting at `offset` (so two writers' batches overlap unevenly). */
const batches = (ticks: ReadonlyArray<Tick>, size: number, offset: number) => {
  const out: Array<ReadonlyArray<Tick>> = []
  for (let i = -offset; i < ticks.length; i += size) out.push(ticks.slice(Math.max(0, i), i + size))
  return out
}

const klines: ReadonlyArray<Candle> = SYMBOLS.flatMap((symbol, s) =>
  [0, 3, 11, 14].map((minute) => ({
    symbol,
    interval: "1m" as const,
    openTime: WINDOW_US / 1000 + minute * 60_000,
    open: "101.00",
    high: `${110 + s}.00`,
    low: "90.00",
    close: "102.00",
    volume: "3.5",
    quoteVolume: "350",
    trades: 4,
    closed: minute < 15
  }))
)

/** What the candle tables and stats hold (ingestion times aside). */
const tables = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.all({
    ticks: sql`SELECT symbol, ts_us, last_price FROM ticks ORDER BY symbol, ts_us`,
    stats: sql`SELECT symbol, latest_us, latest_timestamp_utc, events FROM symbol_stats ORDER BY symbol`,
    candles: sql`SELECT symbol, interval, source, open_time, open, high, low, close, volume, quote_volume, trades, closed,
      first_us, last_us, high_num, high_us, low_num, low_us FROM candles ORDER BY symbol, interval, source, open_time`,
    days: sql`SELECT symbol, date, open, high, low, close, volume, quote_volume, trades, closed, source, basis,
      first_us, last_us, high_num, high_us, low_num, low_us, open_minutes FROM daily_candles ORDER BY symbol, date`
  })
).pipe(Effect.orDie)

describe("PostgreSQL writers of several processes at once", () => {
  it.effect("store every tick once and the candles one writer alone would, the same symbols at once, klines among them", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const db = yield* Effect.acquireRelease(
        Effect.promise(() => createTestDatabase("writers")),
        (db) => Effect.promise(db.drop)
      )
      // two consumers (a rebalance hands both the same partitions) and a backfill, each its own pool
      const processes = yield* Effect.all([0, 1, 2].map(() => Layer.build(postgresStore(db.url, 2))))
      const consumer = (ticks: ReadonlyArray<Tick>, size: number, offset: number) =>
        Effect.forEach(batches(ticks, size, offset), (batch) => Effect.flatMap(TickWriter, (w) => w.storeBatch(batch)), { discard: true })
      const backfill = Effect.forEach(klines, (k) => Effect.flatMap(CandleRepo, (repo) => repo.upsert([k], "klines")), { discard: true })
      yield* Effect.all(
        [
          consumer(allTicks, 40, 0).pipe(Effect.provide(processes[0]!)),
          consumer([...allTicks].reverse(), 70, 13).pipe(Effect.provide(processes[1]!)),
          backfill.pipe(Effect.provide(processes[2]!))
        ],
        { concurrency: "unbounded" }
      )
      const together = yield* tables.pipe(Effect.provide(processes[0]!))

      const alone = yield* withStore("sqlite")(
        Effect.gen(function* () {
          yield* (yield* CandleRepo).upsert(klines, "klines")
          yield* (yield* TickWriter).storeBatch(allTicks)
          return yield* tables
        })
      )
      assert.strictEqual(together.ticks.length, new Set(allTicks.map((t) => `${t.symbol}|${t.tsMicros}`)).size)
      assert.deepStrictEqual(together, alone)
    }).pipe(Effect.scoped)
  )
})

describe("a day stored without merge state (SQLite: written before migration 0003)", () => {
  it.effect("is built again from all its candles when ticks reach it, on both stores alike", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const day = Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        // the 23:50 minute of ticks, and its day as an old sink left it: no basis, no span
        yield* (yield* TickWriter).storeBatch([makeTick("BTCUSDT", WINDOW_US + 5_000_000, "100.00")])
        yield* sql`UPDATE daily_candles SET basis = NULL, first_us = NULL, last_us = NULL, high_num = NULL,
          high_us = NULL, low_num = NULL, low_us = NULL, open_minutes = NULL, high = '1', close = '1'`
        yield* (yield* TickWriter).storeBatch([
          makeTick("BTCUSDT", WINDOW_US + 65_000_000, "103.00"),
          makeTick("BTCUSDT", WINDOW_US + 2_000_000, "99.50")
        ])
        return yield* tables
      })
      const [sqlite, postgres] = yield* Effect.all([withStore("sqlite")(day), withStore("postgres")(day)])
      assert.deepStrictEqual(postgres, sqlite)
      assert.deepStrictEqual(
        sqlite.days.map((d) => [d["open"], d["high"], d["low"], d["close"], d["basis"], d["open_minutes"]]),
        [["99.50", "103.00", "99.50", "103.00", "1m", 0]]
      )
    })
  )
})
