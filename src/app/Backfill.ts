import { Clock, Effect, Either, Option } from "effect"
import { BinanceClient } from "../binance/BinanceClient.js"
import { isRetryable, retryPolicy } from "../binance/retry.js"
import { bucketStart, type Candle, fromKlineRow, type Interval, intervalMs } from "../domain/Candles.js"
import type { TickerSymbol } from "../domain/Ticker.js"
import { DAY_MS } from "../domain/Time.js"
import { CandleRepo } from "../store/CandleRepo.js"
import { makeProgress } from "./Progress.js"

/** Binance's most klines per request (weight 2 each). */
export const KLINES_PAGE = 1000
export const BACKFILL_MAX_DAYS = 3650

export interface BackfillOptions {
  readonly symbols: ReadonlyArray<TickerSymbol>
  readonly days: number
  readonly interval: Interval
  readonly tty: boolean
}

export interface BackfillSummary {
  readonly pages: number
  readonly rows: number
  readonly skipped: number
}

/**
 * Pages `GET /api/v3/klines` oldest to newest for each symbol, from the start of the UTC day `days`
 * ago (or from the newest
 * closed kline already stored: reruns resume and are idempotent) up to now. Each page is stored as
 * it arrives, so an interrupted run keeps what it fetched. The still-open last candle is stored as
 * open and fetched again next time. Requests go through the BinanceClient, which holds them back
 * near the weight budget and for Retry-After.
 */
export const runBackfill = (options: BackfillOptions) =>
  Effect.gen(function* () {
    const client = yield* BinanceClient
    const repo = yield* CandleRepo
    const size = intervalMs(options.interval)
    const now = yield* Clock.currentTimeMillis
    // whole UTC days: the first day's daily candle is complete too
    const earliest = bucketStart(now - options.days * DAY_MS, "1d")

    const plan = yield* Effect.forEach(options.symbols, (symbol) =>
      repo.lastClosedKline(symbol, options.interval).pipe(
        Effect.map((last) => {
          const from = Math.max(earliest, Option.match(last, { onNone: () => earliest, onSome: (t) => t + size }))
          return { symbol, from, pages: Math.max(1, Math.ceil((now - from) / (size * KLINES_PAGE))) }
        })
      )
    )
    const totalPages = plan.reduce((n, p) => n + p.pages, 0)
    yield* Effect.logInfo(
      `backfilling ${options.interval} klines of ${options.symbols.join(", ")} for ${options.days} day(s): about ${totalPages} request(s)`
    )
    const progress = yield* makeProgress(totalPages, { tty: options.tty })
    let skipped = 0

    for (const { from, symbol } of plan) {
      let cursor = from
      while (cursor <= now) {
        const rows = yield* client.klines(symbol, options.interval, cursor, KLINES_PAGE).pipe(
          Effect.retry({ schedule: retryPolicy, while: isRetryable })
        )
        const fetchedAt = yield* Clock.currentTimeMillis
        const candles: Array<Candle> = []
        for (const row of rows) {
          const parsed = fromKlineRow(symbol, options.interval, row, fetchedAt)
          if (Either.isRight(parsed)) candles.push(parsed.right)
          else {
            skipped++
            yield* Effect.logWarning(`skipped a malformed kline of ${symbol}: ${parsed.left}`)
          }
        }
        yield* repo.upsert(candles, "klines")
        yield* progress.page(`${symbol} ${options.interval}`, candles.length)
        if (rows.length < KLINES_PAGE || candles.length === 0) break
        cursor = candles[candles.length - 1]!.openTime + size
      }
    }
    yield* progress.done
    const final = yield* progress.state
    const summary: BackfillSummary = { pages: final.pages, rows: final.rows, skipped }
    yield* Effect.logInfo(`backfill done: ${summary.rows} candle(s) in ${summary.pages} request(s)`)
    return summary
  }).pipe(Effect.annotateLogs({ service: "backfill" }))
