import { Schema, Struct } from "effect"
import { buildDay, type DayMember, dayMergeState } from "../domain/CandleMerge.js"
import { type Candle, Interval, utcDate } from "../domain/Candles.js"
import type { RawValue } from "./RawSqlite.js"

// The rows of `candles` and `daily_candles` and the day rebuild's SQL, shared by CandleRepo (on
// @effect/sql, for klines) and the tick write path (TickCandles.ts, on better-sqlite3), on SQLite
// and on PostgreSQL (store/pg/).

export { DAY_MS } from "../domain/Time.js"

/** What differs between SQLite's SQL and PostgreSQL's in the statements both stores share. */
export interface Dialect {
  /** The greater / lesser of two values (SQLite's scalar MAX / MIN). */
  readonly greatest: string
  readonly least: string
  /** Epoch seconds of a `YYYY-MM-DD` text column, as an integer. */
  readonly epochOfDate: (column: string) => string
  /** A comparison as the 0/1 a SMALLINT column takes (SQLite's comparisons already are). */
  readonly asInt: (condition: string) => string
  /** The `n`-th (1-based) statement parameter. */
  readonly param: (n: number) => string
  /** Inserts a whole row, replacing the one with the same `key`. */
  readonly replaceRow: (table: string, columns: ReadonlyArray<string>, key: string) => string
}

const placeholders = (d: Dialect, count: number) => Array.from({ length: count }, (_, i) => d.param(i + 1)).join(", ")

export const SQLITE: Dialect = {
  greatest: "MAX",
  least: "MIN",
  epochOfDate: (column) => `unixepoch(${column})`,
  asInt: (condition) => condition,
  param: () => "?",
  replaceRow: (table, columns) => `INSERT OR REPLACE INTO ${table} (${columns.join(", ")}) VALUES (${placeholders(SQLITE, columns.length)})`
}

export const POSTGRES: Dialect = {
  greatest: "GREATEST",
  least: "LEAST",
  epochOfDate: (column) => `EXTRACT(EPOCH FROM ${column}::date)::bigint`,
  asInt: (condition) => `(${condition})::int`,
  param: (n) => `$${n}`,
  replaceRow: (table, columns, key) =>
    `INSERT INTO ${table} (${columns.join(", ")}) VALUES (${placeholders(POSTGRES, columns.length)})
     ON CONFLICT (${key}) DO UPDATE SET ${columns.map((c) => `${c} = excluded.${c}`).join(", ")}`
}

/** The columns a candle has in both tables (`daily_candles` as SELECT_DAILY_AS_CANDLES names them). */
const CandleColumns = Schema.Struct({
  symbol: Schema.String,
  interval: Interval,
  open_time: Schema.Number,
  open: Schema.String,
  high: Schema.String,
  low: Schema.String,
  close: Schema.String,
  volume: Schema.String,
  quote_volume: Schema.String,
  trades: Schema.Number,
  closed: Schema.Number
})

/** A row of `candles`. */
export const CandleRow = Schema.Struct({ ...CandleColumns.fields, source: Schema.Literal("klines", "ticks") })
export type CandleRow = typeof CandleRow.Type

/** A row of `daily_candles` as stored (its merge-state columns aside). */
export const DailyCandle = Schema.Struct({
  date: Schema.String,
  ...Struct.omit(CandleColumns.fields, "interval", "open_time"),
  source: Schema.String
})
export type DailyCandle = typeof DailyCandle.Type

/** A stored candle with the span a tick minute keeps for merging (null on klines). */
export const MemberRow = Schema.Struct({
  ...CandleRow.fields,
  first_us: Schema.NullOr(Schema.Number),
  last_us: Schema.NullOr(Schema.Number),
  high_num: Schema.NullOr(Schema.Number),
  high_us: Schema.NullOr(Schema.Number),
  low_num: Schema.NullOr(Schema.Number),
  low_us: Schema.NullOr(Schema.Number)
})
export type MemberRow = typeof MemberRow.Type

export const toCandle = (r: typeof CandleColumns.Type): Candle => ({
  symbol: r.symbol,
  interval: r.interval,
  openTime: r.open_time,
  open: r.open,
  high: r.high,
  low: r.low,
  close: r.close,
  volume: r.volume,
  quoteVolume: r.quote_volume,
  trades: r.trades,
  closed: r.closed === 1
})

/** A row of either table (`daily_candles` as DAILY_AS_CANDLE_COLUMNS names its columns) with the source it was built from. */
export const SourcedCandleRow = Schema.Struct({ ...CandleColumns.fields, source: Schema.String })

/** A stored candle and its source ("klines", "ticks", or for a day "klines+ticks"). */
export const toSourcedCandle = (r: typeof SourcedCandleRow.Type): Candle & { readonly source: string } => ({ ...toCandle(r), source: r.source })

/** The columns of `daily_candles` under the names of `candles`: a day is a 1d candle opening at its UTC midnight. */
export const dailyAsCandleColumns = (d: Dialect) =>
  `symbol, '1d' AS interval, ${d.epochOfDate("date")} * 1000 AS open_time, ` +
  "open, high, low, close, volume, quote_volume, trades, closed, source"
export const DAILY_AS_CANDLE_COLUMNS = dailyAsCandleColumns(SQLITE)

const toMember = (r: MemberRow): DayMember => ({
  ...toCandle(r),
  source: r.source,
  span:
    r.first_us === null || r.last_us === null || r.high_num === null || r.high_us === null || r.low_num === null || r.low_us === null
      ? undefined
      : {
          open: r.open,
          firstUs: r.first_us,
          close: r.close,
          lastUs: r.last_us,
          high: r.high,
          highNum: r.high_num,
          highUs: r.high_us,
          low: r.low,
          lowNum: r.low_num,
          lowUs: r.low_us
        }
})

/** All stored candles of one symbol's UTC day: symbol, day start, day end (epoch ms). */
export const selectDayMembers = (d: Dialect) =>
  `SELECT * FROM candles WHERE symbol = ${d.param(1)} AND open_time >= ${d.param(2)} AND open_time < ${d.param(3)}`
export const SELECT_DAY_MEMBERS = selectDayMembers(SQLITE)

const DAY_COLUMNS = [
  "symbol", "date", "open", "high", "low", "close", "volume", "quote_volume", "trades", "closed", "source", "basis",
  "first_us", "last_us", "high_num", "high_us", "low_num", "low_us", "open_minutes"
] as const

/**
 * The statement that makes a day's row what its stored candles (`rows`, from SELECT_DAY_MEMBERS)
 * say (`buildDay`, with the merge state when it is built from minutes): replaced, or deleted when
 * nothing is left to build it from.
 */
export const rebuiltDay = (
  symbol: string,
  dayStart: number,
  rows: ReadonlyArray<MemberRow>,
  d: Dialect = SQLITE
): { readonly sql: string; readonly params: ReadonlyArray<RawValue> } => {
  const members = rows.map(toMember)
  const built = buildDay(members)
  const date = utcDate(dayStart)
  if (built === undefined) return { sql: `DELETE FROM daily_candles WHERE symbol = ${d.param(1)} AND date = ${d.param(2)}`, params: [symbol, date] }
  const state = built.basis === "1m" ? dayMergeState(members) : undefined
  const c = built.candle
  return {
    sql: d.replaceRow("daily_candles", DAY_COLUMNS, "symbol, date"),
    params: [
      symbol, date, c.open, c.high, c.low, c.close, c.volume, c.quoteVolume, c.trades, c.closed ? 1 : 0, built.source, built.basis,
      state?.span.firstUs ?? null, state?.span.lastUs ?? null, state?.span.highNum ?? null, state?.span.highUs ?? null,
      state?.span.lowNum ?? null, state?.span.lowUs ?? null, state?.openMinutes ?? null
    ]
  }
}
