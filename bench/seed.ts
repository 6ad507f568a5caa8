/**
 * Builds the benchmark database: 365 UTC days ending today of 1m klines for ten symbols
 * (10 × 365 × 1440 = 5,256,000 candles), written through the real `CandleRepo.upsert(…, "klines")`
 * one (symbol, day) at a time, so the daily gold layer is built by the product's own code path;
 * plus 10,000 ticker events per symbol through `TickWriter.insertMany`.
 *
 * Prices are a deterministic random walk seeded per (symbol, day), so a given day has the same
 * candles whenever it is generated. A (symbol, day) already complete in the
 * database (1440 candles and its daily candle) is skipped: a rerun on a complete database takes
 * seconds, and a rerun on a later day only adds the missing days.
 *
 *   node dist/bench/bench/seed.js [--db bench/.data/bench.db] [--days 365] [--ticks 10000] [--days-per-upsert 1]
 *     [--database-url postgres://… (seed a PostgreSQL store instead)]
 */
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import * as path from "node:path"
import { parseArgs } from "node:util"
import type { Candle } from "../src/domain/Candles.js"
import { formatInstantMicros, TICKER_24HR_SOURCE, type TickerEvent, type TickerSymbol, toTick } from "../src/domain/Ticker.js"
import { CandleRepo } from "../src/store/CandleRepo.js"
import { postgresStore, sqliteStore, type StoreServices, type StoreStartError } from "../src/store/Store.js"
import { TickWriter } from "../src/store/TickWriter.js"
import { BENCH_SYMBOLS, DEFAULT_DB, formatDuration, log, machineLine, recordResults, transcript } from "./lib.js"

const DAY_MS = 86_400_000
const MINUTE_MS = 60_000
const MINUTES_PER_DAY = 1440

const { values: args } = parseArgs({
  options: {
    db: { type: "string", default: DEFAULT_DB },
    days: { type: "string", default: "365" },
    ticks: { type: "string", default: "10000" },
    "days-per-upsert": { type: "string", default: "1" },
    /** Seeds a PostgreSQL store at this URL (STORE=postgres) instead of the SQLite file --db. */
    "database-url": { type: "string" }
  }
})
const dbPath = path.resolve(args.db)
const databaseUrl = args["database-url"]
const days = Number(args.days)
const ticksPerSymbol = Number(args.ticks)
const daysPerUpsert = Number(args["days-per-upsert"])
for (const [name, n] of [["--days", days], ["--ticks", ticksPerSymbol], ["--days-per-upsert", daysPerUpsert]] as const) {
  if (!Number.isSafeInteger(n) || n < (name === "--ticks" ? 0 : 1)) throw new Error(`${name} must be a whole number, got ${n}`)
}

// ---------------------------------------------------------------------------------------------
// Deterministic data

/** mulberry32: a tiny seeded PRNG, uniform in [0, 1). */
const prng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const hash = (text: string) => {
  let h = 2166136261
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619)
  return h >>> 0
}

/** Rough price level (quote currency) and per-minute base volume of each symbol. */
type BenchSymbol = (typeof BENCH_SYMBOLS)[number]
const PROFILE: Record<BenchSymbol, { readonly price: number; readonly volume: number }> = {
  BTCUSDT: { price: 65_000, volume: 12 },
  ETHUSDT: { price: 3_200, volume: 150 },
  SOLUSDT: { price: 150, volume: 2_000 },
  BNBUSDT: { price: 600, volume: 300 },
  XRPUSDT: { price: 0.6, volume: 400_000 },
  ADAUSDT: { price: 0.45, volume: 300_000 },
  DOGEUSDT: { price: 0.15, volume: 2_000_000 },
  TRXUSDT: { price: 0.12, volume: 1_000_000 },
  AVAXUSDT: { price: 35, volume: 5_000 },
  LINKUSDT: { price: 15, volume: 8_000 }
}

/** Per-minute log-price volatility (≈ 2.7 % a day). */
const SIGMA = 0.0007

const dec8 = (x: number) => x.toFixed(8)

/**
 * Log-price of `symbol` at the start (00:00 UTC) of day number `dayIndex` (days since the epoch): a
 * smooth deterministic path (three waves) around the symbol's level, so any day can be generated on its
 * own, the same whenever it is generated.
 */
const dayOpenLog = (symbol: BenchSymbol, dayIndex: number) => {
  const h = hash(symbol)
  const phase = (k: number) => ((h >>> (k * 8)) & 0xff) / 40
  return (
    Math.log(PROFILE[symbol].price) +
    0.3 * Math.sin((2 * Math.PI * dayIndex) / 181 + phase(0)) +
    0.12 * Math.sin((2 * Math.PI * dayIndex) / 29 + phase(1)) +
    0.04 * Math.sin((2 * Math.PI * dayIndex) / 7 + phase(2))
  )
}

/**
 * The 1440 1m klines of one (symbol, UTC day): a seeded random walk pinned as a Brownian bridge from
 * the day's open to the next day's open, so consecutive days join up. Each minute opens at the previous
 * close; high ≥ max(open, close) and low ≤ min(open, close) hold on the 8-decimal strings.
 */
const klinesOfDay = (symbol: BenchSymbol, dayStart: number, nowMs: number): Array<Candle> => {
  const dayIndex = Math.floor(dayStart / DAY_MS)
  const random = prng(hash(`${symbol}/${dayIndex}`))
  const normal = () => {
    // Box–Muller; 1 - u keeps the log away from 0
    const u = 1 - random()
    const v = random()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
  }
  const from = dayOpenLog(symbol, dayIndex)
  const gap = dayOpenLog(symbol, dayIndex + 1) - from
  const walk = new Float64Array(MINUTES_PER_DAY + 1)
  for (let m = 1; m <= MINUTES_PER_DAY; m++) walk[m] = walk[m - 1]! + SIGMA * normal()
  const drift = walk[MINUTES_PER_DAY]! - gap
  const baseVolume = PROFILE[symbol].volume
  const out: Array<Candle> = []
  let openNum = Math.exp(from)
  let open = dec8(openNum)
  for (let m = 1; m <= MINUTES_PER_DAY; m++) {
    const openTime = dayStart + (m - 1) * MINUTE_MS
    const closeNum = Math.exp(from + walk[m]! - (m / MINUTES_PER_DAY) * drift)
    const close = dec8(closeNum)
    // toFixed is monotonic, so the formatted high/low still bound the formatted open/close
    const high = dec8(Math.max(openNum, closeNum) * (1 + random() * SIGMA))
    const low = dec8(Math.min(openNum, closeNum) * (1 - random() * SIGMA))
    const volumeNum = baseVolume * (0.2 + 1.6 * random())
    out.push({
      symbol,
      interval: "1m",
      openTime,
      open,
      high,
      low,
      close,
      volume: dec8(volumeNum),
      quoteVolume: dec8(volumeNum * closeNum),
      trades: 20 + Math.floor(random() * 2000),
      closed: openTime + MINUTE_MS <= nowMs
    })
    openNum = closeNum
    open = close
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Seeding

const countRow = <A>(rows: ReadonlyArray<A>) => rows[0]!
/** The lines recorded in bench/RESULTS.md (progress lines are only printed). */
const out = transcript()

const program = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const candleRepo = yield* CandleRepo
  const tickRepo = yield* TickWriter

  const nowMs = Date.now()
  const today = Math.floor(nowMs / DAY_MS) * DAY_MS
  const firstDay = today - (days - 1) * DAY_MS
  const dayStarts = Array.from({ length: days }, (_, i) => firstDay + i * DAY_MS)
  out.print(`seed: ${databaseUrl ?? dbPath}`)
  log(machineLine())
  out.print(
    `window: ${new Date(firstDay).toISOString().slice(0, 10)} .. ${new Date(today).toISOString().slice(0, 10)} ` +
      `(${days} UTC days × ${MINUTES_PER_DAY} 1m klines × ${BENCH_SYMBOLS.length} symbols = ` +
      `${(days * MINUTES_PER_DAY * BENCH_SYMBOLS.length).toLocaleString("en-US")} candles), ` +
      `${daysPerUpsert} day(s) per CandleRepo.upsert call`
  )

  // What is already there: (symbol, day) pairs with all their candles and their daily candle.
  const scanStarted = Date.now()
  const present = yield* sql<{ symbol: string; day: number; n: number }>`
    SELECT symbol, open_time / 86400000 AS day, COUNT(*) AS n FROM candles
    WHERE interval = '1m' AND source = 'klines' AND open_time >= ${firstDay} AND open_time < ${today + DAY_MS}
    GROUP BY symbol, day`
  const dailies = yield* sql<{ symbol: string; date: string }>`
    SELECT symbol, date FROM daily_candles WHERE source = 'klines'`
  const dailySet = new Set(dailies.map((d) => `${d.symbol}|${d.date}`))
  const complete = new Set(
    present
      .filter((r) => r.n === MINUTES_PER_DAY && dailySet.has(`${r.symbol}|${new Date(r.day * DAY_MS).toISOString().slice(0, 10)}`))
      .map((r) => `${r.symbol}|${r.day * DAY_MS}`)
  )
  const total = days * BENCH_SYMBOLS.length
  const todo = total - complete.size
  out.print(`existing: ${complete.size}/${total} (symbol, day) pairs complete (checked in ${Date.now() - scanStarted} ms); ${todo} to write`)

  // Candles, through CandleRepo.upsert: per symbol, days in order, `daysPerUpsert` days per call.
  const started = Date.now()
  let done = 0
  let lastReport = 0
  let upsertMs = 0
  let generateMs = 0
  const report = (force = false) => {
    const now = Date.now()
    if (!force && now - lastReport < 5000) return
    lastReport = now
    const elapsed = now - started
    const eta = done === 0 ? 0 : (elapsed / done) * (todo - done)
    log(
      `  candles: ${done}/${todo} (symbol, day) written (${todo === 0 ? 100 : ((100 * done) / todo).toFixed(1)} %), ` +
        `elapsed ${formatDuration(elapsed)}, ETA ${formatDuration(eta)} ` +
        `[generate ${formatDuration(generateMs)}, CandleRepo.upsert ${formatDuration(upsertMs)}]`
    )
  }
  for (const symbol of BENCH_SYMBOLS) {
    let batch: Array<Candle> = []
    let batchDays = 0
    const flush = Effect.gen(function* () {
      if (batch.length === 0) return
      const t = Date.now()
      yield* candleRepo.upsert(batch, "klines")
      upsertMs += Date.now() - t
      done += batchDays
      batch = []
      batchDays = 0
      report()
    })
    for (const dayStart of dayStarts) {
      if (complete.has(`${symbol}|${dayStart}`)) {
        yield* flush
        continue
      }
      const t = Date.now()
      const candles = klinesOfDay(symbol, dayStart, nowMs)
      generateMs += Date.now() - t
      for (const c of candles) batch.push(c)
      batchDays++
      if (batchDays >= daysPerUpsert) yield* flush
    }
    yield* flush
  }
  const candleMs = Date.now() - started
  if (todo > 0) report(true)
  out.print(`candles: ${todo} (symbol, day) written in ${formatDuration(candleMs)} (${todo === 0 ? "-" : (candleMs / todo).toFixed(1)} ms per (symbol, day))`)

  // Ticks, through TickWriter.insertMany: `ticksPerSymbol` 24h-ticker events per symbol, ~3 s apart, ending now.
  const tickStarted = Date.now()
  const stats = yield* sql<{ symbol: string; events: number }>`SELECT symbol, events FROM symbol_stats`
  let tickWritten = 0
  for (const symbol of BENCH_SYMBOLS) {
    const have = stats.find((s) => s.symbol === symbol)?.events ?? 0
    if (have >= ticksPerSymbol) continue
    const random = prng(hash(`${symbol}/ticks`))
    let price = PROFILE[symbol].price
    const startUs = (nowMs - ticksPerSymbol * 3000) * 1000
    const events: Array<TickerEvent> = []
    for (let i = 0; i < ticksPerSymbol; i++) {
      price *= Math.exp(SIGMA * 2 * (random() - 0.5))
      const micros = startUs + i * 3_000_000 + Math.floor(random() * 1_000_000)
      events.push({
        timestamp_utc: formatInstantMicros(micros),
        symbol: symbol as TickerSymbol,
        lastPrice: dec8(price),
        priceChangePercent: ((random() - 0.5) * 8).toFixed(3),
        volume: dec8(PROFILE[symbol].volume * 1440 * (0.8 + 0.4 * random())),
        source: TICKER_24HR_SOURCE,
        event_time: formatInstantMicros(Math.floor(micros / 1000) * 1000)
      })
    }
    for (let i = 0; i < events.length; i += 2000) tickWritten += (yield* tickRepo.insertMany(events.slice(i, i + 2000).map(toTick))).length
  }
  out.print(`ticks: ${tickWritten} new events written in ${formatDuration(Date.now() - tickStarted)}`)

  // Final counts.
  const candleCount = countRow(yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM candles`).n
  const inWindow = countRow(
    yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM candles WHERE open_time >= ${firstDay} AND open_time < ${today + DAY_MS}`
  ).n
  const dailyCount = countRow(yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM daily_candles`).n
  const tickCount = countRow(yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM ticks`).n
  const perSymbol = yield* sql<{ symbol: string; n: number; first: string; last: string }>`
    SELECT symbol, COUNT(*) AS n, MIN(date) AS first, MAX(date) AS last FROM daily_candles GROUP BY symbol ORDER BY symbol`
  out.print(
    `rows: candles ${candleCount.toLocaleString("en-US")} (${inWindow.toLocaleString("en-US")} in the window; expected ` +
      `${(days * MINUTES_PER_DAY * BENCH_SYMBOLS.length).toLocaleString("en-US")}), daily_candles ${dailyCount}, ticks ${tickCount}`
  )
  for (const s of perSymbol) out.print(`  ${s.symbol.padEnd(9)} daily_candles ${s.n} (${s.first} .. ${s.last})`)
  if (inWindow !== days * MINUTES_PER_DAY * BENCH_SYMBOLS.length) {
    return yield* Effect.die(new Error(`the window holds ${inWindow} candles, expected ${days * MINUTES_PER_DAY * BENCH_SYMBOLS.length}`))
  }
  yield* sql.onDialectOrElse({ sqlite: () => sql`PRAGMA wal_checkpoint(TRUNCATE)`, orElse: () => sql`VACUUM ANALYZE` })
  out.print(`seed: done in ${formatDuration(Date.now() - started + (started - scanStarted))}`)
  recordResults(databaseUrl === undefined ? "seed" : "seed-postgres", `Builds the benchmark database (\`bench/seed.ts\`): the time is the seeding figure.\n\n${out.block()}`)
})

const StoreLive: Layer.Layer<StoreServices, StoreStartError> = databaseUrl === undefined ? sqliteStore(dbPath) : postgresStore(databaseUrl)

Effect.runPromise(program.pipe(Effect.provide(StoreLive))).catch((error: unknown) => {
  process.stderr.write(`seed failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
  process.exit(1)
})
