/**
 * Where a request's time goes, stage by stage, in process (no HTTP): the product modules the two
 * benchmarked endpoints run, timed one stage at a time on the benchmark database.
 *
 * GET /trades/latest?symbol=BTCUSDT (limit 200):
 *   sql       the query through @effect/sql, rows as the driver returns them (no Schema)
 *   repo      TickRepo.latest: the query + Schema decode of the rows (TickRow) + toEvent
 *   encode    Schema.encode(Schema.Array(TickerEvent)): what HttpApiBuilder runs on a success value
 *             (every refinement re-checked: IsoInstant, DecimalString, TickerSymbol)
 *   json      JSON.stringify of the encoded value
 *   (the four above are the path before issue 9; the API now answers with the next two)
 *   latestJson TickRepo.latestJson: SQLite builds the JSON array on the read connection
 *   version   TickRepo.dataVersion: the answer cache's freshness check
 * GET /bi/daily_ohlc.csv?symbol=BTCUSDT&days=365:
 *   sql       the daily_candles query through @effect/sql (no Schema)
 *   repo      CandleRepo.daily: the query + Schema decode (DailyCandle)
 *   report    BiReports.dailyOhlc: repo + normalizeDecimal + toCsv
 *   etag      csvAnswer: the body's bytes and their SHA-256 ETag
 *
 *   node dist/bench/bench/breakdown.js [--db bench/.data/bench.db] [--iterations 300]
 */
import { SqlClient } from "@effect/sql"
import { Effect, Layer, ManagedRuntime, Schema } from "effect"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { csvAnswer } from "../src/api/Http.js"
import { BiReports } from "../src/bi/BiReports.js"
import { TickerEvent } from "../src/domain/Ticker.js"
import { CandleRepo } from "../src/store/CandleRepo.js"
import { sqliteLayer } from "../src/store/Sql.js"
import { TickRepo } from "../src/store/TickRepo.js"
import { DEFAULT_DB, fmt, log, machineLine, recordResults, summarize, transcript } from "./lib.js"

const { values: args } = parseArgs({
  options: {
    db: { type: "string", default: DEFAULT_DB },
    iterations: { type: "string", default: "300" }
  }
})
const iterations = Number(args.iterations)
const DAY_MS = 86_400_000

const StoreLive = Layer.mergeAll(TickRepo.Default, CandleRepo.Default).pipe(Layer.provideMerge(sqliteLayer(path.resolve(args.db))))
const runtime = ManagedRuntime.make(BiReports.Default.pipe(Layer.provideMerge(StoreLive)))

/** The lines recorded in bench/RESULTS.md. */
const out = transcript()

const timeIt = async (label: string, run: () => Promise<unknown> | unknown) => {
  for (let i = 0; i < Math.max(50, iterations / 3); i++) await run()
  const samples: Array<number> = []
  for (let i = 0; i < iterations; i++) {
    const t = process.hrtime.bigint()
    await run()
    samples.push(Number(process.hrtime.bigint() - t) / 1e6)
  }
  const s = summarize(samples)
  out.print(`  ${label.padEnd(58)} mean ${fmt(s.mean, 3).padStart(7)}  p50 ${fmt(s.p50, 3).padStart(7)}  p95 ${fmt(s.p95, 3).padStart(7)} ms`)
  return s.mean
}

const main = async () => {
  log("breakdown: per-stage time of the benchmarked endpoints, in process, no HTTP")
  log(machineLine())
  const { bi, candles, sql, ticks } = await runtime.runPromise(
    Effect.all({ sql: SqlClient.SqlClient, ticks: TickRepo, candles: CandleRepo, bi: BiReports })
  )
  const run = <A, E>(effect: Effect.Effect<A, E, never>) => runtime.runPromise(effect)

  out.print("\nGET /trades/latest?symbol=BTCUSDT (200 events)")
  const latestSql = `SELECT symbol, timestamp_utc, last_price, price_change_percent, volume, source, event_time
        FROM ticks WHERE symbol = ? ORDER BY ts_us DESC LIMIT ?`
  await timeIt("sql: query via @effect/sql, no Schema", () => run(sql.unsafe(latestSql, ["BTCUSDT", 200])))
  await timeIt("repo: TickRepo.latest (query + decode + toEvent)", () => run(ticks.latest("BTCUSDT", 200)))
  const events = await run(ticks.latest("BTCUSDT", 200))
  const encode = Schema.encode(Schema.Array(TickerEvent))
  await timeIt("encode: Schema.encode(Array(TickerEvent)) (HttpApi success)", () => run(encode(events)))
  const encoded = await run(encode(events))
  await timeIt("json: JSON.stringify", () => JSON.stringify(encoded))
  await timeIt("all four stages above except sql, in sequence", async () =>
    JSON.stringify(await run(encode(await run(ticks.latest("BTCUSDT", 200)))))
  )
  await timeIt("latestJson: TickRepo.latestJson (SQLite builds the JSON)", () => run(ticks.latestJson("BTCUSDT", 200)))
  await timeIt("version: TickRepo.dataVersion (the answer cache's check)", () => run(ticks.dataVersion))

  out.print("\nGET /bi/daily_ohlc.csv?symbol=BTCUSDT&days=365")
  const now = Date.now()
  const from = new Date(now - 364 * DAY_MS).toISOString().slice(0, 10)
  const to = new Date(now).toISOString().slice(0, 10)
  await timeIt("sql: daily_candles query via @effect/sql, no Schema", () =>
    run(sql`SELECT symbol, date, open, high, low, close, volume, quote_volume, trades, closed, source
        FROM daily_candles WHERE symbol = ${"BTCUSDT"} AND date >= ${from} AND date <= ${to} ORDER BY date`)
  )
  await timeIt("repo: CandleRepo.daily (query + decode)", () => run(candles.daily("BTCUSDT", from, to)))
  await timeIt("report: BiReports.dailyOhlc (repo + normalizeDecimal + toCsv)", () => run(bi.dailyOhlc("BTCUSDT", 365)))
  const body = await run(bi.dailyOhlc("BTCUSDT", 365))
  await timeIt("etag: csvAnswer (the bytes + their SHA-256)", () => csvAnswer(body, { maxAge: 300, filename: "daily_ohlc_BTCUSDT.csv" }))
  await runtime.dispose()
  log(machineLine())
  recordResults("breakdown", `Per-stage time in process, no HTTP, ${iterations} iterations per stage (\`bench/breakdown.ts\`).\n\n${out.block()}`)
}

main().catch((error: unknown) => {
  process.stderr.write(`breakdown failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
  process.exit(2)
})
