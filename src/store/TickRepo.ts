import { SqlClient, SqlSchema } from "@effect/sql"
import { Array as Arr, Clock, Data, Effect, Schema } from "effect"
import type { Tick, TickerEvent } from "../domain/Ticker.js"

const TickRow = Schema.Struct({
  symbol: Schema.String,
  timestamp_utc: Schema.String,
  last_price: Schema.String,
  price_change_percent: Schema.String,
  volume: Schema.String,
  source: Schema.String,
  event_time: Schema.NullOr(Schema.String)
})
type TickRow = typeof TickRow.Type

const toEvent = (row: TickRow): TickerEvent => {
  const event = {
    timestamp_utc: row.timestamp_utc,
    symbol: row.symbol,
    lastPrice: row.last_price,
    priceChangePercent: row.price_change_percent,
    volume: row.volume,
    source: row.source
  } as TickerEvent
  return row.event_time === null ? event : { ...event, event_time: row.event_time }
}

export const SymbolSummary = Schema.Struct({
  symbol: Schema.String,
  latest_timestamp_utc: Schema.String,
  events: Schema.Number
})
export type SymbolSummary = typeof SymbolSummary.Type

const Inserted = Schema.Struct({ symbol: Schema.String, ts_us: Schema.Number })
type Inserted = typeof Inserted.Type
const decodeInserted = Schema.decodeUnknown(Schema.Array(Inserted))
const decodeRunResult = Schema.decodeUnknown(Schema.Struct({ changes: Schema.Number }))

/** A chunk some of whose ticks were stored before: its insert is undone and done again with RETURNING. */
class PartlyNew extends Data.TaggedError("PartlyNew") {}
const TICK_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"

/** Rows per INSERT statement: 9 parameters each, well under SQLite's bound-parameter limit (32,766). */
const INSERT_CHUNK = 1000

const identityOf = (symbol: string, tsMicros: number) => `${symbol}|${tsMicros}`

/**
 * The ticks of `chunk` that the INSERT reported as stored (RETURNING, in no guaranteed order). A tick
 * whose identity repeats within the chunk was stored by its first occurrence.
 */
const storedOf = (chunk: ReadonlyArray<Tick>, inserted: ReadonlyArray<Inserted>): ReadonlyArray<Tick> => {
  if (inserted.length === chunk.length) return chunk
  if (inserted.length === 0) return []
  const stored = new Set(inserted.map((r) => identityOf(r.symbol, r.ts_us)))
  const out: Array<Tick> = []
  for (const tick of chunk) {
    const id = identityOf(tick.symbol, tick.tsMicros)
    if (stored.delete(id)) out.push(tick)
  }
  return out
}

/** Reads and writes of the tick history (bronze layer). Idempotent writes; every read is bounded. */
export class TickRepo extends Effect.Service<TickRepo>()("store/TickRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    /**
     * One multi-row INSERT, its text and parameters built here (no per-row objects to compile). Which
     * ticks were new: usually all of them (or none, a replay), which the count of inserted rows says.
     * Only a chunk that is partly a replay is inserted again with RETURNING, after its first insert is
     * rolled back (a savepoint): RETURNING costs about half as much again as the insert itself.
     */
    const insertChunk = (ticks: ReadonlyArray<Tick>, ingestedAt: string) => {
      const params: Array<string | number | null> = new Array(ticks.length * 9)
      let p = 0
      for (const { event, symbol, tsMicros } of ticks) {
        params[p++] = symbol
        params[p++] = tsMicros
        params[p++] = event.timestamp_utc
        params[p++] = event.lastPrice
        params[p++] = event.priceChangePercent
        params[p++] = event.volume
        params[p++] = event.source
        params[p++] = event.event_time ?? null
        params[p++] = ingestedAt
      }
      const insert = `INSERT INTO ticks (symbol, ts_us, timestamp_utc, last_price, price_change_percent, volume, source, event_time, ingested_at)
        VALUES ${Array.from({ length: ticks.length }, () => TICK_ROW).join(", ")} ON CONFLICT DO NOTHING`
      const counted = sql.unsafe(insert, params).raw.pipe(
        Effect.flatMap(decodeRunResult),
        Effect.flatMap(({ changes }): Effect.Effect<ReadonlyArray<Tick>, PartlyNew> =>
          changes === ticks.length ? Effect.succeed(ticks) : changes === 0 ? Effect.succeed([]) : Effect.fail(new PartlyNew())
        ),
        sql.withTransaction
      )
      const returning = sql.unsafe(`${insert} RETURNING symbol, ts_us`, params).pipe(
        Effect.flatMap(decodeInserted),
        Effect.map((inserted) => storedOf(ticks, inserted))
      )
      return Effect.catchTag(counted, "PartlyNew", () => returning)
    }

    /** symbol_stats for the new ticks: one statement per batch. */
    const bumpStats = (stored: ReadonlyArray<Tick>) => {
      const latest = new Map<string, { tick: Tick; count: number }>()
      for (const tick of stored) {
        const seen = latest.get(tick.symbol)
        if (seen === undefined) latest.set(tick.symbol, { tick, count: 1 })
        else {
          seen.count++
          if (tick.tsMicros > seen.tick.tsMicros) seen.tick = tick
        }
      }
      if (latest.size === 0) return Effect.void
      const params = [...latest.values()].flatMap(({ count, tick }) => [tick.symbol, tick.tsMicros, tick.event.timestamp_utc, count])
      return sql.unsafe(
        `INSERT INTO symbol_stats (symbol, latest_us, latest_timestamp_utc, events)
         VALUES ${Array.from({ length: latest.size }, () => "(?, ?, ?, ?)").join(", ")}
         ON CONFLICT (symbol) DO UPDATE SET
           events = events + excluded.events,
           latest_timestamp_utc = CASE WHEN excluded.latest_us > latest_us THEN excluded.latest_timestamp_utc ELSE latest_timestamp_utc END,
           latest_us = MAX(latest_us, excluded.latest_us)`,
        params
      )
    }

    /**
     * Stores the ticks in one transaction (a savepoint inside the caller's) and returns those that were
     * new, in batch order: a replayed tick, or a second tick with an identity already stored, is not.
     */
    const insertMany = (ticks: ReadonlyArray<Tick>) =>
      Effect.gen(function* () {
        if (ticks.length === 0) return []
        const ingestedAt = new Date(yield* Clock.currentTimeMillis).toISOString()
        const stored: Array<Tick> = []
        for (const chunk of Arr.chunksOf(ticks, INSERT_CHUNK)) {
          for (const tick of yield* insertChunk(chunk, ingestedAt)) stored.push(tick)
        }
        yield* bumpStats(stored)
        return stored as ReadonlyArray<Tick>
      }).pipe(sql.withTransaction, Effect.withSpan("TickRepo.insertMany"))

    const findLatest = SqlSchema.findAll({
      Request: Schema.Struct({ symbol: Schema.String, limit: Schema.Number }),
      Result: TickRow,
      execute: ({ limit, symbol }) => sql`
        SELECT symbol, timestamp_utc, last_price, price_change_percent, volume, source, event_time
        FROM ticks WHERE symbol = ${symbol} ORDER BY ts_us DESC LIMIT ${limit}`
    })

    const findRange = SqlSchema.findAll({
      Request: Schema.Struct({ symbol: Schema.String, startUs: Schema.Number, endUs: Schema.Number, limit: Schema.Number }),
      Result: TickRow,
      execute: ({ endUs, limit, startUs, symbol }) => sql`
        SELECT symbol, timestamp_utc, last_price, price_change_percent, volume, source, event_time
        FROM ticks WHERE symbol = ${symbol} AND ts_us >= ${startUs} AND ts_us < ${endUs}
        ORDER BY ts_us ASC LIMIT ${limit}`
    })

    const findSymbols = SqlSchema.findAll({
      Request: Schema.Void,
      Result: SymbolSummary,
      execute: () => sql`SELECT symbol, latest_timestamp_utc, events FROM symbol_stats ORDER BY symbol`
    })

    const findNewest = SqlSchema.findAll({
      Request: Schema.Void,
      Result: Schema.Struct({ newest: Schema.NullOr(Schema.Number) }),
      execute: () => sql`SELECT MAX(latest_us) AS newest FROM symbol_stats`
    })

    return {
      insertMany,
      /** Newest first. */
      latest: (symbol: string, limit: number) => Effect.map(findLatest({ symbol, limit }), Arr.map(toEvent)),
      /** Oldest first, `start` inclusive, `end` exclusive (microseconds since the epoch). */
      range: (symbol: string, startUs: number, endUs: number, limit: number) =>
        Effect.map(findRange({ symbol, startUs, endUs, limit }), Arr.map(toEvent)),
      symbols: findSymbols(undefined),
      /** The newest stored event's instant (µs since the epoch), 0 when nothing is stored. */
      newestMicros: findNewest(undefined).pipe(Effect.map((rows) => rows[0]?.newest ?? 0))
    } as const
  })
}) {}
