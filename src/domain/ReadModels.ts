import { Schema } from "effect"

// What the read side serves, shared by the store that reads it, the reports built on it and the API
// that answers with it (dependency arrows: api -> bi -> store -> domain).

/** A symbol with stored data: its newest event's instant and how many events are stored. */
export const SymbolSummary = Schema.Struct({
  symbol: Schema.String,
  latest_timestamp_utc: Schema.String,
  events: Schema.Number
})
export type SymbolSummary = typeof SymbolSummary.Type

/** Most UTC days one BI report covers, and how many it covers when not asked. */
export const BI_MAX_DAYS = 3650
export const BI_DEFAULT_DAYS = 90
