import { SqlError } from "@effect/sql"
import { Clock, Effect, Option } from "effect"
import type { Tick } from "../domain/Ticker.js"
import { isoInstant } from "../domain/Time.js"
import { Metrics, tickerLabels } from "../status/Metrics.js"
import { writerConnection } from "./RawSqlite.js"
import { makeTickMerge } from "./TickCandles.js"

/**
 * The write side of the tick history: a batch of ticks into `ticks` and `symbol_stats`, and (for the
 * sink) its candles, in one transaction. It runs on a connection of its own to the same file, straight
 * on better-sqlite3 with statements prepared once: a batch is one synchronous call, so no other fiber
 * can interleave with its transaction, and no statement pays for the Effect runtime around it (the
 * store-path bench: that cost more than SQLite itself). Reads stay on @effect/sql (TickRepo, CandleRepo).
 */
export class TickWriter extends Effect.Service<TickWriter>()("store/TickWriter", {
  scoped: Effect.gen(function* () {
    const db = yield* writerConnection("the tick store")
    const metrics = Option.getOrUndefined(yield* Effect.serviceOption(Metrics))
    const storedTally = metrics?.tally("stored", tickerLabels)
    const observeBatch = metrics?.sqliteBatch("ticker")

    const insertTick = db.prepare(
      `INSERT INTO ticks (symbol, ts_us, timestamp_utc, last_price, price_change_percent, volume, source, event_time, ingested_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
    )
    const bumpStats = db.prepare(
      `INSERT INTO symbol_stats (symbol, latest_us, latest_timestamp_utc, events) VALUES (?, ?, ?, ?)
       ON CONFLICT (symbol) DO UPDATE SET
         events = events + excluded.events,
         latest_timestamp_utc = CASE WHEN excluded.latest_us > latest_us THEN excluded.latest_timestamp_utc ELSE latest_timestamp_utc END,
         latest_us = MAX(latest_us, excluded.latest_us)`
    )
    const mergeCandles = makeTickMerge(db)

    /** The ticks that were new, in batch order (a replay, or a repeat within the batch, is not), and symbol_stats for them. */
    const insert = (ticks: ReadonlyArray<Tick>, ingestedAt: string): ReadonlyArray<Tick> => {
      const stored: Array<Tick> = []
      const latest = new Map<string, { tick: Tick; count: number }>()
      for (const tick of ticks) {
        const { event, symbol, tsMicros } = tick
        const { changes } = insertTick.run(
          symbol,
          tsMicros,
          event.timestamp_utc,
          event.lastPrice,
          event.priceChangePercent,
          event.volume,
          event.source,
          event.event_time ?? null,
          ingestedAt
        )
        if (changes === 0) continue
        stored.push(tick)
        const seen = latest.get(symbol)
        if (seen === undefined) latest.set(symbol, { tick, count: 1 })
        else {
          seen.count++
          if (tsMicros > seen.tick.tsMicros) seen.tick = tick
        }
      }
      for (const { count, tick } of latest.values()) bumpStats.run(tick.symbol, tick.tsMicros, tick.event.timestamp_utc, count)
      return stored
    }

    const insertOnly = db.transaction(insert)
    const insertWithCandles = db.transaction((ticks: ReadonlyArray<Tick>, ingestedAt: string, now: number) => {
      const stored = insert(ticks, ingestedAt)
      mergeCandles(stored, now)
      return stored
    })

    /**
     * Runs one transaction function; a failure (SQLITE_BUSY, SQLITE_FULL, …) has rolled it back. What
     * it stored is counted in the same synchronous step as its COMMIT, so /metrics never disagrees
     * with the table.
     */
    const run = (what: string, ticks: ReadonlyArray<Tick>, f: (ingestedAt: string, now: number) => ReadonlyArray<Tick>) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.try({
          try: () => {
            const started = performance.now()
            const stored = f(isoInstant(now), now)
            observeBatch?.(ticks.length, (performance.now() - started) / 1000)
            storedTally?.count(stored)
            return stored
          },
          catch: (cause) => new SqlError.SqlError({ cause, message: `Failed to ${what}` })
        })
      )

    return {
      /** Stores the ticks and returns those that were new, in batch order; no candles (test fixtures, imports). */
      insertMany: (ticks: ReadonlyArray<Tick>) =>
        ticks.length === 0 ? Effect.succeed([]) : run("store ticks", ticks, (ingestedAt) => insertOnly(ticks, ingestedAt)),
      /**
       * The consumer's write: the ticks, and the new ones merged into their 1m and daily candles, in
       * one transaction, so stored ticks never miss their candles (a replay of them is not new).
       */
      storeBatch: (ticks: ReadonlyArray<Tick>) =>
        ticks.length === 0 ? Effect.succeed([]) : run("store the batch", ticks, (ingestedAt, now) => insertWithCandles(ticks, ingestedAt, now))
    } as const
  })
}) {}
