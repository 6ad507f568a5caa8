/**
 * The SQLite sink merges each batch's new ticks into the stored 1m tick candles and daily candles
 * (O(batch)). Whatever the batches, the order of arrival and the replays, the result must be what a
 * full recomputation from the stored ticks (and the stored klines) gives: `candlesFromTicks` for the
 * minutes, `buildDay` for the days.
 */
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { SqliteClient, SqliteMigrator } from "@effect/sql-sqlite-node"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { type Context, Effect, FastCheck as fc, Layer, ManagedRuntime, Schema, TestClock } from "effect"
import { buildDay, type CandleSource } from "../src/domain/CandleMerge.js"
import { bucketStart, type Candle, candlesFromTicks, type Interval } from "../src/domain/Candles.js"
import { utcDate } from "../src/domain/Time.js"
import { type Tick, type TickerEvent } from "../src/domain/Ticker.js"
import { CandleRepo, DailyCandle } from "../src/store/CandleRepo.js"
import CreateTicks from "../src/store/migrations/0001_create_ticks.js"
import CreateCandles from "../src/store/migrations/0002_create_candles.js"
import { sqliteLayer } from "../src/store/Sql.js"
import { makeSqliteSink } from "../src/store/SqliteSink.js"
import { postgresStore, type StoreServices } from "../src/store/Store.js"
import type { TickSink } from "../src/store/TickSink.js"
import { TickRepo } from "../src/store/TickRepo.js"
import { TickWriter } from "../src/store/TickWriter.js"
import { makeTick } from "./support/events.js"
import { createTestDatabase } from "./support/pg.js"
import { STORE_KINDS, withStore } from "./support/stores.js"

const MINUTE = 60_000
/** Six minutes across a UTC midnight: 2026-01-15T23:57 to 2026-01-16T00:03. */
const WINDOW = Date.UTC(2026, 0, 15, 23, 57)
const MINUTES = 6
const SYMBOLS = ["BTCUSDT", "ETHUSDT"] as const

type Store = TickRepo | TickWriter | CandleRepo | SqlClient.SqlClient

/**
 * One PostgreSQL database for the property's runs, emptied before each: a new database per run costs
 * most of a second, and the property runs dozens of scenarios. Opened on first use, dropped after all.
 */
let sharedPg: Promise<{ readonly context: Context.Context<StoreServices>; readonly close: () => Promise<void> }> | undefined
afterAll(async () => {
  if (sharedPg !== undefined) await (await sharedPg).close()
})
const withSharedPg = <A, E>(f: Effect.Effect<A, E, Store>) =>
  Effect.gen(function* () {
    sharedPg ??= (async () => {
      const db = await createTestDatabase("incremental")
      const runtime = ManagedRuntime.make(postgresStore(db.url, 2))
      const context = await runtime.runPromise(Effect.context<StoreServices>())
      return { context, close: () => runtime.dispose().then(db.drop) }
    })()
    const { context } = yield* Effect.promise(() => sharedPg!)
    return yield* Effect.zipRight(
      Effect.orDie(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`TRUNCATE ticks, symbol_stats, candles, daily_candles`)),
      f
    ).pipe(Effect.provide(context))
  })

/** How a batch goes to the sink (one place, so the same scenarios can be replayed against other sinks). */
const write = (sink: TickSink["Type"], ticks: ReadonlyArray<Tick>) => sink.writeBatch(ticks)

// ---- reading back what is stored, and the full recomputation

const StoredTick = Schema.Struct({
  symbol: Schema.String,
  timestamp_utc: Schema.String,
  last_price: Schema.String,
  price_change_percent: Schema.String,
  volume: Schema.String,
  source: Schema.String
})
const StoredCandle = Schema.Struct({
  symbol: Schema.String,
  interval: Schema.Literal("1m", "5m", "1h", "1d"),
  source: Schema.Literal("klines", "ticks"),
  open_time: Schema.Number,
  open: Schema.String,
  high: Schema.String,
  low: Schema.String,
  close: Schema.String,
  volume: Schema.String,
  quote_volume: Schema.String,
  trades: Schema.Number,
  closed: Schema.Number
})
const StoredDay = DailyCandle
type StoredDay = typeof StoredDay.Type

const select = <A, I>(schema: Schema.Schema<A, I>, query: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(query)).pipe(
    Effect.flatMap(Schema.decodeUnknown(Schema.Array(schema))),
    Effect.orDie
  )

const toCandle = (r: typeof StoredCandle.Type): Candle & { readonly source: CandleSource } => ({
  symbol: r.symbol,
  interval: r.interval,
  openTime: r.open_time,
  open: r.open,
  high: r.high,
  low: r.low,
  close: r.close,
  volume: r.volume,
  quoteVolume: r.quote_volume,
  trades: r.trades,
  closed: r.closed === 1,
  source: r.source
})

/** What is stored, and what a full recomputation from the stored ticks and klines says should be. */
const storedAndRecomputed = (now: number) =>
  Effect.gen(function* () {
    const ticks = yield* select(StoredTick, "SELECT * FROM ticks ORDER BY symbol, ts_us")
    const candles = (yield* select(StoredCandle, "SELECT * FROM candles ORDER BY symbol, interval, source, open_time")).map(toCandle)
    const days = yield* select(
      StoredDay,
      "SELECT symbol, date, open, high, low, close, volume, quote_volume, trades, closed, source FROM daily_candles ORDER BY symbol, date"
    )
    const events = ticks.map(
      (t): TickerEvent =>
        ({
          timestamp_utc: t.timestamp_utc,
          symbol: t.symbol,
          lastPrice: t.last_price,
          priceChangePercent: t.price_change_percent,
          volume: t.volume,
          source: t.source
        }) as TickerEvent
    )
    const tickMinutes = candlesFromTicks(events, "1m", now).map((c) => ({ ...c, source: "ticks" as const }))
    const klines = candles.filter((c) => c.source === "klines")
    const byDay = new Map<string, Array<Candle & { readonly source: CandleSource }>>()
    for (const c of [...klines, ...tickMinutes]) {
      const key = `${c.symbol}|${utcDate(bucketStart(c.openTime, "1d"))}`
      byDay.set(key, [...(byDay.get(key) ?? []), c])
    }
    const expectedDays: Array<StoredDay> = []
    for (const [key, dayCandles] of [...byDay].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const built = buildDay(dayCandles)
      if (built === undefined) continue
      const [symbol, date] = key.split("|") as [string, string]
      const c = built.candle
      expectedDays.push({
        symbol,
        date,
        open: c.open,
        high: c.high,
        low: c.low,
        close: c.close,
        volume: c.volume,
        quote_volume: c.quoteVolume,
        trades: c.trades,
        closed: c.closed ? 1 : 0,
        source: built.source
      })
    }
    return {
      ticks: events,
      minutes: candles.filter((c) => c.source === "ticks").map(({ source: _, ...c }) => c),
      expectedMinutes: candlesFromTicks(events, "1m", now),
      days,
      expectedDays
    }
  })

const assertConsistent = (now: number) =>
  Effect.gen(function* () {
    const { days, expectedDays, expectedMinutes, minutes } = yield* storedAndRecomputed(now)
    assert.deepStrictEqual(minutes, expectedMinutes, "the stored 1m tick candles differ from a recomputation")
    assert.deepStrictEqual(days, expectedDays, "the stored daily candles differ from a recomputation")
  })

// ---- the scenarios

/** A decimal string of `hundredths`, spelled with 2, 3 or 8 places (equal values need not be spelled alike). */
const decimal = (hundredths: number, extraZeros: number) =>
  `${Math.floor(hundredths / 100)}.${String(hundredths % 100).padStart(2, "0")}${"0".repeat(extraZeros)}`

/** Few distinct values, so highs and lows tie, spelled differently (the earliest tick's spelling wins). */
const price = fc.tuple(fc.integer({ min: 9_998, max: 10_002 }), fc.constantFrom(0, 1, 6)).map(([h, z]) => decimal(h, z))

/** Few distinct instants per minute, so identities repeat (replays, and rarely another price for the same instant). */
const arbTick = fc
  .record({
    symbol: fc.constantFrom(...SYMBOLS),
    minute: fc.integer({ min: 0, max: MINUTES - 1 }),
    slot: fc.integer({ min: 0, max: 11 }),
    offset: fc.constantFrom(0, 1, 4_999_999),
    price
  })
  .map(({ minute, offset, price, slot, symbol }) => makeTick(symbol, (WINDOW + minute * MINUTE) * 1000 + slot * 5_000_000 + offset, price))

const arbKline = fc
  .record({
    symbol: fc.constantFrom(...SYMBOLS),
    interval: fc.constantFrom<Interval>("1m", "1m", "1m", "1h"),
    minute: fc.integer({ min: 0, max: MINUTES - 1 }),
    prices: fc.array(fc.integer({ min: 9_990, max: 10_010 }), { minLength: 4, maxLength: 4 }),
    swap: fc.boolean(),
    volume: fc.integer({ min: 0, max: 100_000 }),
    zeros: fc.constantFrom(0, 6),
    closed: fc.boolean()
  })
  .map(({ closed, interval, minute, prices, swap, symbol, volume, zeros }): Candle => {
    const [low, a, b, high] = [...prices].sort((x, y) => x - y) as [number, number, number, number]
    return {
      symbol,
      interval,
      openTime: bucketStart(WINDOW + minute * MINUTE, interval),
      open: decimal(swap ? b : a, zeros),
      high: decimal(high, zeros),
      low: decimal(low, zeros),
      close: decimal(swap ? a : b, zeros),
      volume: decimal(volume, zeros),
      quoteVolume: decimal(volume * 100, 0),
      trades: volume % 97,
      closed
    }
  })

const arbScenario = fc.record({
  ticks: fc.array(arbTick, { minLength: 1, maxLength: 60 }),
  batchSizes: fc.array(fc.integer({ min: 1, max: 15 }), { minLength: 1, maxLength: 8 }),
  /** After writing batch `after`, write batch `which` (an earlier one) again. */
  replays: fc.array(fc.record({ after: fc.nat(), which: fc.nat() }), { maxLength: 4 }),
  /** Klines stored (backfill) after batch `after`; some runs have none. */
  klines: fc.array(fc.record({ after: fc.nat(), kline: arbKline }), { maxLength: 4 }),
  /** The clock during the run: before, inside or after the window, so minutes and days are open or closed. */
  now: fc.integer({ min: -1, max: MINUTES + 1 }).map((m) => WINDOW + m * MINUTE + 30_000)
})
type Scenario = typeof arbScenario extends fc.Arbitrary<infer T> ? T : never

const batchesOf = ({ batchSizes, ticks }: Scenario) => {
  const batches: Array<ReadonlyArray<Tick>> = []
  for (let i = 0, b = 0; i < ticks.length; b++) {
    const size = batchSizes[b % batchSizes.length]!
    batches.push(ticks.slice(i, i + size))
    i += size
  }
  return batches
}

const runScenario = (scenario: Scenario) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(scenario.now)
    const sink = yield* makeSqliteSink
    const candles = yield* CandleRepo
    const batches = batchesOf(scenario)
    const klinesAfter = (b: number) => scenario.klines.filter((k) => k.after % (batches.length + 1) === b).map((k) => k.kline)
    const writeKlines = (b: number) => {
      const klines = klinesAfter(b)
      return klines.length === 0 ? Effect.void : candles.upsert(klines, "klines")
    }
    yield* writeKlines(0)
    for (const [b, batch] of batches.entries()) {
      yield* write(sink, batch)
      for (const r of scenario.replays) if (r.after % batches.length === b) yield* write(sink, batches[r.which % (b + 1)]!)
      yield* writeKlines(b + 1)
    }
    return batches
  })

describe.each(STORE_KINDS)("candles merged incrementally from the newly stored ticks (%s)", (kind) => {
  const withDb = withStore(kind)
  const withPropertyDb = <A, E>(f: Effect.Effect<A, E, Store>): Effect.Effect<A, unknown> =>
    kind === "postgres" ? withSharedPg(f) : withDb(f)

  it.effect.prop(
    "equal a full recomputation from the stored ticks, for any batching, order of arrival and replay",
    [arbScenario],
    ([scenario]) =>
      withPropertyDb(
        Effect.gen(function* () {
          const batches = yield* runScenario(scenario)
          yield* assertConsistent(scenario.now)
          // the stored ticks are the first arrival of each identity
          const first = new Map<string, Tick>()
          for (const t of batches.flat()) if (!first.has(`${t.symbol}|${t.tsMicros}`)) first.set(`${t.symbol}|${t.tsMicros}`, t)
          const { ticks } = yield* storedAndRecomputed(scenario.now)
          assert.sameDeepMembers([...ticks], [...first.values()].map((t) => t.event))
          // replaying everything again changes nothing
          const before = yield* storedAndRecomputed(scenario.now)
          const sink = yield* makeSqliteSink
          for (const batch of [...batches].reverse()) yield* write(sink, batch)
          assert.deepStrictEqual(yield* storedAndRecomputed(scenario.now), before)
        })
      ),
    // about 10 s on PostgreSQL; a failure's shrinking takes longer, and its counterexample is the point
    { fastCheck: { numRuns: 60 }, timeout: 120_000 }
  )

  it.effect("a minute written once takes in more events of it that arrive in a later batch, after it ended", () =>
    withDb(
      Effect.gen(function* () {
        const m = WINDOW // 23:57
        const at = (seconds: number) => (m + seconds * 1000) * 1000
        // consumer lag, a redelivery, a replay: the minute is already over when its first events are
        // stored, and more of them come in a later batch
        yield* TestClock.setTime(m + 2 * MINUTE)
        const sink = yield* makeSqliteSink
        yield* write(sink, [makeTick("BTCUSDT", at(10), "100.00"), makeTick("BTCUSDT", at(20), "101.00")])
        yield* TestClock.setTime(m + 5 * MINUTE)
        yield* write(sink, [
          makeTick("BTCUSDT", at(5), "99.50"),
          makeTick("BTCUSDT", at(50), "102.00"),
          makeTick("BTCUSDT", at(10), "100.00")
        ])
        const { days, minutes } = yield* storedAndRecomputed(m + 5 * MINUTE)
        assert.deepStrictEqual(
          minutes.map((c) => [c.openTime, c.open, c.high, c.low, c.close, c.closed]),
          [[m, "99.50", "102.00", "99.50", "102.00", true]]
        )
        assert.deepStrictEqual(
          days.map((d) => [d.date, d.open, d.high, d.low, d.close, d.source]),
          [["2026-01-15", "99.50", "102.00", "99.50", "102.00", "ticks"]]
        )
        yield* assertConsistent(m + 5 * MINUTE)
      })
    )
  )

  it.effect("equal prices spelled differently: the earliest tick's spelling wins, whichever batch brought it", () =>
    withDb(
      Effect.gen(function* () {
        const m = Date.UTC(2026, 0, 15, 10, 0)
        yield* TestClock.setTime(m + 10 * MINUTE)
        const sink = yield* makeSqliteSink
        // minute 10:01 first, with the day's extremes spelled one way ...
        yield* write(sink, [makeTick("BTCUSDT", (m + 70_000) * 1000, "101.0"), makeTick("BTCUSDT", (m + 80_000) * 1000, "99.0")])
        // ... then 10:00, earlier, with the same values spelled another way, and the same within 10:01
        yield* write(sink, [
          makeTick("BTCUSDT", (m + 10_000) * 1000, "101.00000000"),
          makeTick("BTCUSDT", (m + 20_000) * 1000, "99.00000000"),
          makeTick("BTCUSDT", (m + 65_000) * 1000, "101.000")
        ])
        const { days, minutes } = yield* storedAndRecomputed(m + 10 * MINUTE)
        assert.deepStrictEqual(
          minutes.map((c) => [c.high, c.low]),
          [
            ["101.00000000", "99.00000000"],
            ["101.000", "99.0"]
          ]
        )
        assert.deepStrictEqual(days.map((d) => [d.high, d.low]), [["101.00000000", "99.00000000"]])
        yield* assertConsistent(m + 10 * MINUTE)
      })
    )
  )

  it.effect("a recorded hour replayed in shuffled batches gives every minute and the day right", () =>
    withDb(
      Effect.gen(function* () {
        const start = Date.UTC(2026, 0, 15, 10, 0)
        yield* TestClock.setTime(start + 2 * 3_600_000)
        // one event every 7 s for 62 minutes, prices wandering
        const ticks = Array.from({ length: Math.floor((62 * 60) / 7) }, (_, i) =>
          makeTick("BTCUSDT", (start + i * 7_000) * 1000 + 13, decimal(10_000 + Math.round(300 * Math.sin(i / 9) + 40 * Math.cos(i)), 6))
        )
        const shuffled = [...ticks].sort((a, b) => ((a.tsMicros * 7919) % 1013) - ((b.tsMicros * 7919) % 1013))
        const sink = yield* makeSqliteSink
        for (let i = 0; i < shuffled.length; i += 37) yield* write(sink, shuffled.slice(i, i + 37))
        yield* write(sink, shuffled.slice(100, 300)) // a redelivery
        const { minutes } = yield* storedAndRecomputed(start + 2 * 3_600_000)
        assert.strictEqual(minutes.length, 62)
        yield* assertConsistent(start + 2 * 3_600_000)
      })
    )
  )

  it.effect("a kline standing for a minute keeps the day's values; later ticks of that minute only add the label", () =>
    withDb(
      Effect.gen(function* () {
        const m = Date.UTC(2026, 0, 15, 10, 0)
        yield* TestClock.setTime(m + 10 * MINUTE)
        const candles = yield* CandleRepo
        const sink = yield* makeSqliteSink
        const kline: Candle = {
          symbol: "BTCUSDT",
          interval: "1m",
          openTime: m,
          open: "100.00",
          high: "110.00",
          low: "90.00",
          close: "105.00",
          volume: "3.5",
          quoteVolume: "350",
          trades: 4,
          closed: true
        }
        yield* candles.upsert([kline], "klines")
        yield* write(sink, [makeTick("BTCUSDT", (m + 30_000) * 1000, "200.00")])
        let day = (yield* storedAndRecomputed(m + 10 * MINUTE)).days
        assert.deepStrictEqual(day.map((d) => [d.open, d.high, d.low, d.close, d.volume, d.source]), [
          ["100.00", "110.00", "90.00", "105.00", "3.5", "klines+ticks"]
        ])
        yield* write(sink, [makeTick("BTCUSDT", (m + MINUTE + 1) * 1000, "120.00")])
        day = (yield* storedAndRecomputed(m + 10 * MINUTE)).days
        assert.deepStrictEqual(day.map((d) => [d.open, d.high, d.low, d.close, d.volume, d.source]), [
          ["100.00", "120.00", "90.00", "120.00", "3.5", "klines+ticks"]
        ])
        yield* assertConsistent(m + 10 * MINUTE)
      })
    )
  )
})

describe("migration 0003 on a database written before it", () => {
  it.effect("derives the frozen tick minutes again from the stored ticks, rebuilds their days, and merges from there", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const file = `${yield* fs.makeTempDirectoryScoped()}/old.db`
      const m = Date.UTC(2026, 0, 15, 10, 0)
      const now = m + 10 * MINUTE
      yield* TestClock.setTime(now)
      // A database at 0002, as the old sink left it: a minute frozen after its first batch (the event
      // at 10:00:05 came later and never reached it), and its day built from that.
      yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* SqliteMigrator.run({
          loader: SqliteMigrator.fromRecord({ "0001_create_ticks": CreateTicks, "0002_create_candles": CreateCandles })
        })
        const tick = (seconds: number, price: string) => {
          const t = makeTick("BTCUSDT", (m + seconds * 1000) * 1000, price)
          return {
            symbol: t.symbol,
            ts_us: t.tsMicros,
            timestamp_utc: t.event.timestamp_utc,
            last_price: price,
            price_change_percent: t.event.priceChangePercent,
            volume: t.event.volume,
            source: t.event.source,
            event_time: null,
            ingested_at: "2026-01-15T10:05:00.000Z"
          }
        }
        yield* sql`INSERT INTO ticks ${sql.insert([tick(5, "95.00"), tick(20, "100.00"), tick(40, "104.00"), tick(70, "101.00")])}`
        // more ticks than the migration reads at once (20,000), one every 10 ms: minutes span its pages
        const many = Array.from({ length: 25_000 }, (_, i) => {
          const t = makeTick("ETHUSDT", (m + i * 10) * 1000 + 3, decimal(300_000 + ((i * 7919) % 1000), i % 3 === 0 ? 6 : 0))
          return { ...tick(0, "0"), symbol: t.symbol, ts_us: t.tsMicros, timestamp_utc: t.event.timestamp_utc, last_price: t.event.lastPrice }
        })
        for (let i = 0; i < many.length; i += 1000) yield* sql`INSERT INTO ticks ${sql.insert(many.slice(i, i + 1000))}`
        const row = (openTime: number, ohlc: readonly [string, string, string, string]) => ({
          symbol: "BTCUSDT",
          interval: "1m",
          source: "ticks",
          open_time: openTime,
          open: ohlc[0],
          high: ohlc[1],
          low: ohlc[2],
          close: ohlc[3],
          volume: "0",
          quote_volume: "0",
          trades: 0,
          closed: 1
        })
        yield* sql`INSERT INTO candles ${sql.insert([row(m, ["100.00", "104.00", "100.00", "104.00"]), row(m + MINUTE, ["101.00", "101.00", "101.00", "101.00"])])}`
        yield* sql`INSERT INTO daily_candles ${sql.insert({
          symbol: "BTCUSDT",
          date: "2026-01-15",
          open: "100.00",
          high: "104.00",
          low: "100.00",
          close: "101.00",
          volume: "0",
          quote_volume: "0",
          trades: 0,
          closed: 0,
          source: "ticks"
        })}`
        // another day, klines only, untouched by ticks: it keeps its row until ticks come
        yield* sql`INSERT INTO daily_candles ${sql.insert({
          symbol: "ETHUSDT",
          date: "2026-01-14",
          open: "1",
          high: "2",
          low: "1",
          close: "2",
          volume: "5",
          quote_volume: "7",
          trades: 3,
          closed: 1,
          source: "klines"
        })}`
      }).pipe(Effect.provide(sqliteLayerAt0002(file)))

      yield* Effect.gen(function* () {
        const { days, expectedDays, expectedMinutes, minutes } = yield* storedAndRecomputed(now)
        assert.deepStrictEqual(
          minutes.filter((c) => c.symbol === "BTCUSDT").map((c) => [c.open, c.high, c.low, c.close]),
          [
            ["95.00", "104.00", "95.00", "104.00"],
            ["101.00", "101.00", "101.00", "101.00"]
          ]
        )
        assert.deepStrictEqual(minutes, expectedMinutes)
        assert.deepStrictEqual(
          days.filter((d) => d.symbol !== "ETHUSDT" || d.date !== "2026-01-14"),
          expectedDays
        )
        assert.deepStrictEqual(days.find((d) => d.symbol === "BTCUSDT")!, {
          symbol: "BTCUSDT",
          date: "2026-01-15",
          open: "95.00",
          high: "104.00",
          low: "95.00",
          close: "101.00",
          volume: "0",
          quote_volume: "0",
          trades: 0,
          closed: 0,
          source: "ticks"
        })
        assert.deepStrictEqual(days.find((d) => d.symbol === "ETHUSDT" && d.date === "2026-01-14")!.source, "klines")
        // and merges from there
        const sink = yield* makeSqliteSink
        yield* write(sink, [makeTick("BTCUSDT", (m + 1_000) * 1000, "94.00"), makeTick("BTCUSDT", (m + 90_000) * 1000, "106.00")])
        const after = yield* storedAndRecomputed(now)
        assert.deepStrictEqual(after.minutes, after.expectedMinutes)
        assert.deepStrictEqual(after.days.filter((d) => d.date === "2026-01-15"), after.expectedDays)
      }).pipe(Effect.provide(Layer.mergeAll(TickRepo.Default, TickWriter.Default, CandleRepo.Default).pipe(Layer.provideMerge(sqliteLayer(file)))))
    }).pipe(Effect.scoped, Effect.provide(NodeContext.layer))
  )
})

/** A database file migrated to 0002 only (the schema before incremental candles). */
const sqliteLayerAt0002 = (file: string) => SqliteClient.layer({ filename: file }).pipe(Layer.provideMerge(NodeContext.layer))
