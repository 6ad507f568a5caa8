import { SqlClient, SqlSchema } from "@effect/sql"
import { Array as Arr, Clock, Effect, Schema } from "effect"
import { eventKey, type TickerEvent } from "../domain/Ticker.js"

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

const Inserted = Schema.Struct({ symbol: Schema.String, ts_us: Schema.Number, timestamp_utc: Schema.String })

/** Rows per INSERT statement: well under SQLite's bound-parameter limit. */
const INSERT_CHUNK = 1000

/** Reads and writes of the tick history (bronze layer). Idempotent writes; every read is bounded. */
export class TickRepo extends Effect.Service<TickRepo>()("store/TickRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const insertChunk = (events: ReadonlyArray<TickerEvent>, ingestedAt: string) =>
      SqlSchema.findAll({
        Request: Schema.Unknown,
        Result: Inserted,
        execute: () =>
          sql`INSERT INTO ticks ${sql.insert(
            events.map((e) => ({
              symbol: e.symbol,
              ts_us: eventKey(e).tsMicros,
              timestamp_utc: e.timestamp_utc,
              last_price: e.lastPrice,
              price_change_percent: e.priceChangePercent,
              volume: e.volume,
              source: e.source,
              event_time: e.event_time ?? null,
              ingested_at: ingestedAt
            }))
          )} ON CONFLICT DO NOTHING RETURNING symbol, ts_us, timestamp_utc`
      })(undefined)

    const bumpStats = (inserted: ReadonlyArray<typeof Inserted.Type>) =>
      Effect.forEach(
        Object.values(Arr.groupBy(inserted, (r) => r.symbol)),
        (rows) => {
          const latest = rows.reduce((a, b) => (b.ts_us > a.ts_us ? b : a))
          return sql`
            INSERT INTO symbol_stats (symbol, latest_us, latest_timestamp_utc, events)
            VALUES (${latest.symbol}, ${latest.ts_us}, ${latest.timestamp_utc}, ${rows.length})
            ON CONFLICT (symbol) DO UPDATE SET
              events = events + excluded.events,
              latest_timestamp_utc = CASE WHEN excluded.latest_us > latest_us THEN excluded.latest_timestamp_utc ELSE latest_timestamp_utc END,
              latest_us = MAX(latest_us, excluded.latest_us)`
        },
        { discard: true }
      )

    /** Stores the events in one transaction; returns how many were new (replays are ignored). */
    const insertMany = (events: ReadonlyArray<TickerEvent>) =>
      Effect.gen(function* () {
        if (events.length === 0) return 0
        const ingestedAt = new Date(yield* Clock.currentTimeMillis).toISOString()
        let added = 0
        for (const chunk of Arr.chunksOf(events, INSERT_CHUNK)) {
          const inserted = yield* insertChunk(chunk, ingestedAt)
          yield* bumpStats(inserted)
          added += inserted.length
        }
        return added
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
