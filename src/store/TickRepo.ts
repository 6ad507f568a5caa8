import { SqlClient, SqlSchema } from "@effect/sql"
import { Array as Arr, Effect, Schema } from "effect"
import type { TickerEvent } from "../domain/Ticker.js"

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

/** Reads of the tick history (bronze layer), every one bounded; TickWriter writes it. */
export class TickRepo extends Effect.Service<TickRepo>()("store/TickRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

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
