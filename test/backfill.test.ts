import { SqlClient } from "@effect/sql"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { runBackfill } from "../src/app/Backfill.js"
import { renderBar } from "../src/app/Progress.js"
import { BinanceClient } from "../src/binance/BinanceClient.js"
import type { TickerSymbol } from "../src/domain/Ticker.js"
import { CandleRepo } from "../src/store/CandleRepo.js"
import { driveClock, withEnv } from "./support/effect.js"
import { type FakeBinance, startFakeBinance } from "./support/fakeBinance.js"
import { STORE_KINDS, withStore as withFreshStore } from "./support/stores.js"

let fake: FakeBinance
// A fixed "now" for the fake and the TestClock: 2026-03-05 14:05:17.123 UTC.
const NOW = Date.UTC(2026, 2, 5, 14, 5, 17, 123)
beforeAll(async () => {
  fake = await startFakeBinance({ now: () => NOW })
})
afterAll(() => fake.close())

const BTC = "BTCUSDT" as TickerSymbol
const ETH = "ETHUSDT" as TickerSymbol
const klineCalls = () => fake.requests.filter((r) => r.path === "/api/v3/klines")

/** Rows of a query on the store in use. */
const query = (text: string) => Effect.orDie(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<Record<string, unknown>>(text)))
const count = (where = "1 = 1") => Effect.map(query(`SELECT COUNT(*) AS n FROM candles WHERE ${where}`), (rows) => Number(rows[0]!["n"]))

describe.each(STORE_KINDS)("backfill against the fake Binance (%s)", (kind) => {
  /** Runs `f` with the backfill's services over a fresh store, the TestClock set to NOW. */
  const withStore = <A, E>(f: () => Effect.Effect<A, E, CandleRepo | BinanceClient | SqlClient.SqlClient>) =>
    withFreshStore(kind)(
      Effect.zipRight(TestClock.setTime(NOW), f()).pipe(Effect.provide(BinanceClient.Default))
    ).pipe(withEnv({ BINANCE_BASE_URL: fake.url }))

  it.effect("pages 1m klines oldest to newest, 1000 per request, and keeps the open candle open", () =>
    withStore(() =>
      Effect.gen(function* () {
        const before = klineCalls().length
        const summary = yield* runBackfill({ symbols: [BTC], days: 2, interval: "1m", tty: false })
        const calls = klineCalls().slice(before)
        // whole days from 2026-03-03 00:00 UTC, plus today's minutes up to 14:05 (that one still open)
        const expected = 2 * 1440 + 14 * 60 + 6
        assert.strictEqual(summary.rows, expected)
        assert.strictEqual(calls.length, 4)
        assert.deepStrictEqual(calls.map((c) => c.query.get("limit")), ["1000", "1000", "1000", "1000"])
        const starts = calls.map((c) => Number(c.query.get("startTime")))
        assert.deepStrictEqual(starts, [0, 1, 2, 3].map((i) => Date.UTC(2026, 2, 3) + i * 1000 * 60_000))
        assert.strictEqual(yield* count(), expected)
        assert.strictEqual(yield* count("closed = 0"), 1)
        const open = (yield* query("SELECT open_time FROM candles WHERE closed = 0"))[0]!
        assert.strictEqual(open.open_time, Date.UTC(2026, 2, 5, 14, 5))
        // the candles are contiguous: no gap, no overlap
        const times = (yield* query("SELECT open_time FROM candles ORDER BY open_time")).map((r) => Number(r["open_time"]))
        times.slice(1).forEach((t, i) => assert.strictEqual(t - times[i]!, 60_000))
        // and they make the daily candles of the gold layer
        const days = yield* query("SELECT date, closed, source FROM daily_candles ORDER BY date")
        assert.deepStrictEqual(days, [
          { date: "2026-03-03", closed: 1, source: "klines" },
          { date: "2026-03-04", closed: 1, source: "klines" },
          { date: "2026-03-05", closed: 0, source: "klines" }
        ])
      })
    )
  )

  it.effect("is idempotent: a rerun only fetches from the newest closed candle on", () =>
    withStore(() =>
      Effect.gen(function* () {
        yield* runBackfill({ symbols: [BTC, ETH], days: 10, interval: "1d", tty: false })
        const rows = yield* count()
        assert.strictEqual(rows, 2 * 11)
        const before = klineCalls().length
        const again = yield* runBackfill({ symbols: [BTC, ETH], days: 10, interval: "1d", tty: false })
        assert.strictEqual(yield* count(), rows)
        assert.strictEqual(klineCalls().length - before, 2, "one request per symbol, for the open day")
        assert.strictEqual(again.rows, 2)
        const last = klineCalls().at(-1)!
        assert.strictEqual(Number(last.query.get("startTime")), Date.UTC(2026, 2, 5))
      })
    )
  )

  it.effect("resumes after an interrupted run without fetching the stored pages again", () =>
    withStore(() =>
      Effect.gen(function* () {
        fake.setPersistentFault(undefined)
        const first = yield* Effect.fork(Effect.flip(runBackfill({ symbols: [BTC], days: 3, interval: "1m", tty: false })))
        // let two pages through, then Binance goes down for good: the run gives up after its retries
        yield* Effect.promise(async () => {
          const start = klineCalls().length
          while (klineCalls().length < start + 2) await new Promise((r) => setTimeout(r, 2))
          fake.setPersistentFault({ kind: "status", status: 503 })
        })
        const failure = yield* driveClock(first, "1 second")
        assert.strictEqual(failure._tag, "BinanceUnavailable")
        fake.setPersistentFault(undefined)
        const stored = yield* count()
        assert.isAtLeast(stored, 2000)
        const before = klineCalls().length
        yield* runBackfill({ symbols: [BTC], days: 3, interval: "1m", tty: false })
        assert.strictEqual(yield* count(), 3 * 1440 + 14 * 60 + 6)
        const firstResumed = klineCalls()[before]!
        assert.strictEqual(Number(firstResumed.query.get("startTime")), Date.UTC(2026, 2, 2) + stored * 60_000)
      })
    )
  )

  it.effect("waits out Retry-After on a 429 in the middle of a run", () =>
    withStore(() =>
      Effect.gen(function* () {
        const before = klineCalls().length
        fake.enqueueFaults({ kind: "status", status: 429, retryAfterSeconds: 30 })
        const run = yield* Effect.fork(runBackfill({ symbols: [BTC], days: 1, interval: "1h", tty: false }))
        yield* Effect.promise(async () => {
          while (klineCalls().length < before + 1) await new Promise((r) => setTimeout(r, 2))
        })
        yield* TestClock.adjust("29 seconds")
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 50)))
        assert.strictEqual(klineCalls().length, before + 1, "nothing leaves before Retry-After")
        yield* driveClock(run, "1 second")
        assert.strictEqual(klineCalls().length, before + 2)
        assert.strictEqual(yield* count(), 24 + 15)
      })
    )
  )
})

describe("backfill progress", () => {
  it("draws a progress bar with pages, rows and ETA", () => {
    const bar = renderBar({ label: "BTCUSDT 1m", pages: 5, totalPages: 10, rows: 5000, startedAt: 0 }, 10_000, 10)
    assert.strictEqual(bar, "[#####-----]  50% pages 5/10 rows 5000 ETA 0:10 BTCUSDT 1m")
    assert.include(renderBar({ label: "x", pages: 0, totalPages: 3, rows: 0, startedAt: 0 }, 0, 4), "ETA --:--")
  })
})
