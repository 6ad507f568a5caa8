import { SqlClient, SqlError } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Array as Arr, Clock, Effect, Layer, Option } from "effect"
import type { Tick } from "../../domain/Ticker.js"
import { isoInstant } from "../../domain/Time.js"
import { Metrics, tickerLabels } from "../../status/Metrics.js"
import { TickWriter } from "../TickWriter.js"
import { lockSymbols } from "./PgCandleLocks.js"
import { makePgTickMerge } from "./PgTickCandles.js"
import { defectAsFailure } from "./PgSql.js"

/**
 * The batch into `ticks` (the first of each identity in the batch; a stored one is not new) and the
 * new ones into `symbol_stats`, in one statement: the positions (1-based) of the new ticks come back,
 * in batch order. Nine parameters whatever the batch's size (PostgreSQL allows 65,535).
 */
const INSERT_TICKS = `
  WITH batch AS (
    SELECT DISTINCT ON (symbol, ts_us) *
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
      WITH ORDINALITY AS b(symbol, ts_us, timestamp_utc, last_price, price_change_percent, volume, source, event_time, ord)
    ORDER BY symbol, ts_us, ord
  ), stored AS (
    INSERT INTO ticks (symbol, ts_us, timestamp_utc, last_price, price_change_percent, volume, source, event_time, ingested_at)
    SELECT symbol, ts_us, timestamp_utc, last_price, price_change_percent, volume, source, event_time, $9::text FROM batch
    ON CONFLICT DO NOTHING
    RETURNING symbol, ts_us, timestamp_utc
  ), stats AS (
    INSERT INTO symbol_stats (symbol, latest_us, latest_timestamp_utc, events)
    SELECT DISTINCT ON (symbol) symbol, ts_us, timestamp_utc, count(*) OVER (PARTITION BY symbol)
    FROM stored ORDER BY symbol, ts_us DESC
    ON CONFLICT (symbol) DO UPDATE SET
      events = symbol_stats.events + excluded.events,
      latest_timestamp_utc = CASE WHEN excluded.latest_us > symbol_stats.latest_us
        THEN excluded.latest_timestamp_utc ELSE symbol_stats.latest_timestamp_utc END,
      latest_us = GREATEST(symbol_stats.latest_us, excluded.latest_us)
  )
  SELECT batch.ord FROM stored JOIN batch USING (symbol, ts_us) ORDER BY batch.ord`

/** The statement's parameters: one array per column. */
const tickColumns = (ticks: ReadonlyArray<Tick>, ingestedAt: string) => {
  const n = ticks.length
  const symbol = new Array<string>(n)
  const tsUs = new Array<number>(n)
  const timestamp = new Array<string>(n)
  const lastPrice = new Array<string>(n)
  const change = new Array<string>(n)
  const volume = new Array<string>(n)
  const source = new Array<string>(n)
  const eventTime = new Array<string | null>(n)
  for (let i = 0; i < n; i++) {
    const { event, symbol: s, tsMicros } = ticks[i]!
    symbol[i] = s
    tsUs[i] = tsMicros
    timestamp[i] = event.timestamp_utc
    lastPrice[i] = event.lastPrice
    change[i] = event.priceChangePercent
    volume[i] = event.volume
    source[i] = event.source
    eventTime[i] = event.event_time ?? null
  }
  return [symbol, tsUs, timestamp, lastPrice, change, volume, source, eventTime, ingestedAt]
}

/**
 * TickWriter on PostgreSQL: the SQLite writer's semantics (TickWriter.ts), one transaction per batch.
 * The batch's symbols are locked first (PgCandleLocks.ts), so consumers on several machines may
 * write the same symbol (a Kafka rebalance) and the merge stays right. A batch costs a fixed number of
 * round trips: BEGIN, the locks, the ticks and stats, and for `storeBatch` the candle merge's three,
 * COMMIT.
 */
export const PgTickWriterLive: Layer.Layer<TickWriter, never, SqlClient.SqlClient | PgClient.PgClient> = Layer.effect(
  TickWriter,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const metrics = Option.getOrUndefined(yield* Effect.serviceOption(Metrics))
    const storedTally = metrics?.tally("stored", tickerLabels)
    const observeBatch = metrics?.sqliteBatch("ticker")
    const lock = lockSymbols(sql)
    const mergeCandles = yield* makePgTickMerge

    /** The ticks that were new, in batch order, with symbol_stats for them. */
    const insert = (ticks: ReadonlyArray<Tick>, ingestedAt: string) =>
      Effect.gen(function* () {
        yield* lock(Arr.dedupe(ticks.map((t) => t.symbol)))
        const rows = yield* sql.unsafe(INSERT_TICKS, tickColumns(ticks, ingestedAt)).values
        return rows.map((row) => {
          const ord = row[0]
          if (typeof ord !== "number") throw new TypeError(`expected a batch position, got ${String(ord)}`)
          return ticks[ord - 1]!
        })
      })

    /** One transaction; what it stored is counted once it has committed. */
    const run = (
      what: string,
      ticks: ReadonlyArray<Tick>,
      f: (ingestedAt: string, now: number) => Effect.Effect<ReadonlyArray<Tick>, SqlError.SqlError>
    ): Effect.Effect<ReadonlyArray<Tick>, SqlError.SqlError> =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const started = performance.now()
        const stored = yield* f(isoInstant(now), now).pipe(
          sql.withTransaction,
          defectAsFailure,
          Effect.mapError((cause) => new SqlError.SqlError({ cause, message: `Failed to ${what}` }))
        )
        observeBatch?.(ticks.length, (performance.now() - started) / 1000)
        storedTally?.count(stored)
        return stored
      })

    return TickWriter.make({
      insertMany: (ticks) => (ticks.length === 0 ? Effect.succeed([]) : run("store ticks", ticks, (ingestedAt) => insert(ticks, ingestedAt))),
      storeBatch: (ticks) =>
        ticks.length === 0
          ? Effect.succeed([])
          : run("store the batch", ticks, (ingestedAt, now) =>
              Effect.tap(insert(ticks, ingestedAt), (stored) => mergeCandles(stored, now))
            )
    })
  })
)
