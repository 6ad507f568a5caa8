import { SqlClient, type SqlError } from "@effect/sql"
import { Effect, Schema } from "effect"
import { type TickMinute, tickMinutes } from "../../domain/CandleMerge.js"
import type { Tick } from "../../domain/Ticker.js"
import { DAY_MS, MINUTE_MS } from "../../domain/Time.js"
import { MemberRow, POSTGRES, rebuiltDay, selectDayMembers } from "../CandleRows.js"
import type { RawValue } from "../RawSqlite.js"
import {
  dayChange,
  dayRoute,
  type DayState,
  mergeTickDays,
  mergeTickMinutes,
  type MinuteState,
  spanParams,
  storedMinute,
  type TouchedDay,
  touchedDays
} from "../TickCandles.js"

// The tick path of the candles on PostgreSQL: the merge of TickCandles.ts (the same SQL and day
// arithmetic), batched: one read of the touched days, one of their stored minutes, one statement that
// writes every minute and day. Run inside the writer's transaction, its symbols locked.

const DAY_STATES = `
  SELECT d.symbol, d.date, d.source, d.basis, d.first_us
  FROM unnest($1::text[], $2::text[]) AS u(symbol, date)
  JOIN daily_candles d ON d.symbol = u.symbol AND d.date = u.date`

const MINUTE_STATES = `
  SELECT c.symbol, c.open_time, c.source, c.closed
  FROM unnest($1::text[], $2::bigint[]) AS u(symbol, open_time)
  JOIN candles c ON c.symbol = u.symbol AND c.interval = '1m' AND c.source IN ('klines', 'ticks') AND c.open_time = u.open_time`

const SPAN_TYPES = ["text", "text", "text", "text", "bigint", "bigint", "float8", "bigint", "float8", "bigint"]
const SPAN_COLUMNS = "open, high, low, close, first_us, last_us, high_num, high_us, low_num, low_us"

/** `unnest` of one array parameter per column, from parameter `first` on. */
const unnest = (first: number, types: ReadonlyArray<string>, columns: string) =>
  `unnest(${types.map((t, i) => `$${first + i}::${t}[]`).join(", ")}) AS u(${columns})`

const MINUTE_TYPES = ["text", "bigint", "smallint", ...SPAN_TYPES]
const DAY_TYPES = ["text", "text", "smallint", "int", ...SPAN_TYPES]
const RELABEL_TYPES = ["text", "text"]

/**
 * Every tick minute merged into `candles`, every day built from minutes into `daily_candles`, and the
 * days of klines that only get the label: three statements in one (their rows never overlap).
 */
const WRITE = `
  WITH minutes AS (
    INSERT INTO candles (symbol, interval, source, open_time, volume, quote_volume, trades, closed, ${SPAN_COLUMNS})
    SELECT symbol, '1m', 'ticks', open_time, '0', '0', 0, closed, ${SPAN_COLUMNS}
    FROM ${unnest(1, MINUTE_TYPES, `symbol, open_time, closed, ${SPAN_COLUMNS}`)}
    ${mergeTickMinutes(POSTGRES)}
  ), days AS (
    INSERT INTO daily_candles (symbol, date, volume, quote_volume, trades, source, basis, closed, open_minutes, ${SPAN_COLUMNS})
    SELECT symbol, date, '0', '0', 0, 'ticks', '1m', closed, open_minutes, ${SPAN_COLUMNS}
    FROM ${unnest(1 + MINUTE_TYPES.length, DAY_TYPES, `symbol, date, closed, open_minutes, ${SPAN_COLUMNS}`)}
    ${mergeTickDays(POSTGRES)}
  ), relabeled AS (
    UPDATE daily_candles d SET source = 'klines+ticks'
    FROM ${unnest(1 + MINUTE_TYPES.length + DAY_TYPES.length, RELABEL_TYPES, "symbol, date")}
    WHERE d.symbol = u.symbol AND d.date = u.date AND d.basis = '1m' AND d.source = 'klines'
  )
  SELECT 1`

/** Rows as columns: one array per column, what `unnest` takes. */
const columnar = (width: number) => {
  const columns: Array<Array<RawValue>> = Array.from({ length: width }, () => [])
  return {
    columns,
    push: (row: ReadonlyArray<RawValue>) => row.forEach((value, i) => columns[i]!.push(value))
  }
}

const decodeDays = Schema.decodeUnknown(
  Schema.Array(
    Schema.Struct({
      symbol: Schema.String,
      date: Schema.String,
      source: Schema.String,
      basis: Schema.NullOr(Schema.String),
      first_us: Schema.NullOr(Schema.Number)
    })
  )
)
const decodeMinutes = Schema.decodeUnknown(
  Schema.Array(Schema.Struct({ symbol: Schema.String, open_time: Schema.Number, source: Schema.String, closed: Schema.Number }))
)
const decodeMembers = Schema.decodeUnknown(Schema.Array(MemberRow))

/**
 * The merge of newly stored ticks into the 1m tick candles and the daily candles on the SqlClient in
 * context (TickCandles.makeTickMerge, the same results): open from the earliest tick, close from the
 * latest, high/low as max/min, whichever batch brought them. `now` (epoch ms) says which minutes
 * have closed. Three round trips: the days, their minutes (none when no touched day is built from
 * minutes), the write; a day without merge state adds two.
 */
export const makePgTickMerge = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const SELECT_DAY_MEMBERS = selectDayMembers(POSTGRES)
  const query = (text: string, params: ReadonlyArray<unknown>) => sql.unsafe<Record<string, unknown>>(text, params)

  /** A day without merge state (none written by this store; kept for parity): built again from all its candles. */
  const rebuildDay = (day: TouchedDay) =>
    query(SELECT_DAY_MEMBERS, [day.symbol, day.dayStart, day.dayStart + DAY_MS]).pipe(
      Effect.flatMap(decodeMembers),
      Effect.orDie,
      Effect.flatMap((rows) => {
        const { params, sql: text } = rebuiltDay(day.symbol, day.dayStart, rows, POSTGRES)
        return query(text, params)
      })
    )

  return (ticks: ReadonlyArray<Tick>, now: number): Effect.Effect<void, SqlError.SqlError> =>
    Effect.gen(function* () {
      if (ticks.length === 0) return
      const days = touchedDays(tickMinutes(ticks))
      const states = new Map<TouchedDay, DayState>()
      const byDay = new Map<string, TouchedDay>()
      for (const day of days) byDay.set(`${day.symbol}|${day.date}`, day)
      const dayRows = yield* query(DAY_STATES, [days.map((d) => d.symbol), days.map((d) => d.date)]).pipe(
        Effect.flatMap(decodeDays),
        Effect.orDie
      )
      for (const row of dayRows) states.set(byDay.get(`${row.symbol}|${row.date}`)!, row)

      // The stored state of the minutes of the days built from minutes, read before they are merged.
      const known = new Map<TickMinute, MinuteState | "kline">()
      const asked = new Map<string, TickMinute>()
      for (const day of days) {
        if (dayRoute(states.get(day)) === "minutes") for (const m of day.minutes) asked.set(`${m.symbol}|${m.openTime}`, m)
      }
      if (asked.size > 0) {
        const minutes = [...asked.values()]
        const rows = yield* query(MINUTE_STATES, [minutes.map((m) => m.symbol), minutes.map((m) => m.openTime)]).pipe(
          Effect.flatMap(decodeMinutes),
          Effect.orDie
        )
        const byMinute = new Map<TickMinute, Array<MinuteState>>()
        for (const row of rows) {
          const m = asked.get(`${row.symbol}|${row.open_time}`)!
          const list = byMinute.get(m)
          if (list === undefined) byMinute.set(m, [row])
          else list.push(row)
        }
        for (const [m, list] of byMinute) {
          const was = storedMinute(list)
          if (was !== undefined) known.set(m, was)
        }
      }

      const minuteWrites = columnar(MINUTE_TYPES.length)
      const dayWrites = columnar(DAY_TYPES.length)
      const relabels = columnar(RELABEL_TYPES.length)
      const legacy: Array<TouchedDay> = []
      for (const day of days) {
        for (const m of day.minutes) minuteWrites.push([m.symbol, m.openTime, m.openTime + MINUTE_MS <= now ? 1 : 0, ...spanParams(m)])
        const state = states.get(day)
        const route = dayRoute(state)
        if (route === "legacy") legacy.push(day)
        if (route !== "minutes") continue
        const change = dayChange(day, state, known, now)
        if (change?._tag === "merge") dayWrites.push([day.symbol, day.date, change.closed, change.openDelta, ...spanParams(change.span)])
        else if (change?._tag === "relabel") relabels.push([day.symbol, day.date])
      }
      yield* query(WRITE, [...minuteWrites.columns, ...dayWrites.columns, ...relabels.columns])
      for (const day of legacy) yield* rebuildDay(day)
    })
})
