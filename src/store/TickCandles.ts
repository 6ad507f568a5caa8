import { mergeSpans, type PriceSpan, type TickMinute, tickMinutes } from "../domain/CandleMerge.js"
import type { Tick } from "../domain/Ticker.js"
import { DAY_MS, MINUTE_MS, utcDate } from "../domain/Time.js"
import { type Dialect, type MemberRow, rebuiltDay, SELECT_DAY_MEMBERS, SQLITE } from "./CandleRows.js"
import type { RawDb, RawStatement, RawValue } from "./RawSqlite.js"

// The tick path of the candles: O(batch), from the newly stored ticks only, inside the write's
// transaction. The SQL and the day arithmetic here serve both stores: on SQLite (TickWriter.ts) every
// statement is a single-row one prepared once (a batch touches a handful of minutes and days, and
// SQLite runs each in microseconds); PostgreSQL (pg/PgTickCandles.ts) runs them batched.

/**
 * The span merge of a stored row (`table`) with its excluded twin: open from the earlier first
 * instant, close from the later last one, high/low on the numbers kept beside the strings (the
 * earlier instant wins a tie). The same for minutes and for minute-based days.
 */
const spanMerge = (t: "candles" | "daily_candles", d: Dialect) => `
    open = CASE WHEN excluded.first_us < ${t}.first_us THEN excluded.open ELSE ${t}.open END,
    first_us = ${d.least}(${t}.first_us, excluded.first_us),
    close = CASE WHEN excluded.last_us > ${t}.last_us THEN excluded.close ELSE ${t}.close END,
    last_us = ${d.greatest}(${t}.last_us, excluded.last_us),
    high = CASE WHEN excluded.high_num > ${t}.high_num OR (excluded.high_num = ${t}.high_num AND excluded.high_us < ${t}.high_us)
      THEN excluded.high ELSE ${t}.high END,
    high_us = CASE WHEN excluded.high_num > ${t}.high_num OR (excluded.high_num = ${t}.high_num AND excluded.high_us < ${t}.high_us)
      THEN excluded.high_us ELSE ${t}.high_us END,
    high_num = ${d.greatest}(${t}.high_num, excluded.high_num),
    low = CASE WHEN excluded.low_num < ${t}.low_num OR (excluded.low_num = ${t}.low_num AND excluded.low_us < ${t}.low_us)
      THEN excluded.low ELSE ${t}.low END,
    low_us = CASE WHEN excluded.low_num < ${t}.low_num OR (excluded.low_num = ${t}.low_num AND excluded.low_us < ${t}.low_us)
      THEN excluded.low_us ELSE ${t}.low_us END,
    low_num = ${d.least}(${t}.low_num, excluded.low_num),
`

/**
 * The merge of a batch's tick minutes into the stored ones, in SQL: open from the earliest tick,
 * close from the latest, high/low as max/min (the earliest tick winning a tie), whichever batch
 * brought them. It is `mergeSpans` (domain/CandleMerge.ts); a tick merged twice changes nothing.
 * `closed` only ever goes from 0 to 1: a tick candle is never frozen, late ticks still reach it.
 */
export const mergeTickMinutes = (d: Dialect) => `
  ON CONFLICT (symbol, interval, source, open_time) DO UPDATE SET
    ${spanMerge("candles", d)}
    closed = ${d.greatest}(candles.closed, excluded.closed)`

/**
 * The same merge for the day rows built from minutes (basis 1m), plus the count of member minutes not
 * closed (`excluded.open_minutes` is the batch's change to it) and the label: a day of klines that
 * gets tick minutes becomes `klines+ticks`. Closed once its 23:59 minute is in and no minute is open.
 * Rows built from 1d, 1h or 5m klines are left alone: ticks do not count there.
 */
export const mergeTickDays = (d: Dialect) => `
  ON CONFLICT (symbol, date) DO UPDATE SET
    ${spanMerge("daily_candles", d)}
    open_minutes = daily_candles.open_minutes + excluded.open_minutes,
    closed = ${d.asInt(`${d.greatest}(daily_candles.last_us, excluded.last_us) >= (${d.epochOfDate("daily_candles.date")} + 86340) * 1000000
      AND daily_candles.open_minutes + excluded.open_minutes = 0`)},
    source = CASE WHEN daily_candles.source = 'klines' THEN 'klines+ticks' ELSE daily_candles.source END
  WHERE daily_candles.basis = '1m'`

export const spanParams = (s: PriceSpan): Array<RawValue> => [
  s.open, s.high, s.low, s.close, s.firstUs, s.lastUs, s.highNum, s.highUs, s.lowNum, s.lowUs
]

export interface DayState {
  readonly source: string
  readonly basis: string | null
  readonly first_us: number | null
}
export interface MinuteState {
  readonly source: string
  readonly closed: number
}

/** The touched days of a batch: its tick minutes by (symbol, UTC day). */
export interface TouchedDay {
  readonly symbol: string
  readonly dayStart: number
  readonly date: string
  readonly minutes: Array<TickMinute>
}

/** A batch's tick minutes by (symbol, UTC day), in the order the days first appear. */
export const touchedDays = (minutes: ReadonlyArray<TickMinute>): Array<TouchedDay> => {
  const days = new Map<string, TouchedDay>()
  for (const m of minutes) {
    const dayStart = m.openTime - (m.openTime % DAY_MS)
    const key = `${m.symbol}|${dayStart}`
    let day = days.get(key)
    if (day === undefined) days.set(key, (day = { symbol: m.symbol, dayStart, date: utcDate(dayStart), minutes: [] }))
    day.minutes.push(m)
  }
  return [...days.values()]
}

/**
 * How a touched day takes in its tick minutes: merged (built from minutes, or new); built again from
 * all its candles, once (written before migration 0003: no basis or no merge state); or not at all
 * (built from coarser klines).
 */
export const dayRoute = (state: DayState | undefined): "minutes" | "legacy" | "coarse" =>
  state === undefined || (state.basis === "1m" && state.first_us !== null)
    ? "minutes"
    : state.basis === null || state.basis === "1m"
      ? "legacy"
      : "coarse"

/** A minute's stored state from its 1m rows (klines, ticks): a kline stands for it, else its tick candle's state, if any. */
export const storedMinute = (rows: Iterable<MinuteState>): MinuteState | "kline" | undefined => {
  let tickState: MinuteState | undefined
  for (const row of rows) {
    if (row.source === "klines") return "kline"
    tickState = row
  }
  return tickState
}

/** What a day built from minutes takes from the batch: its minutes merged in, only the label, or nothing. */
export type DayChange =
  | { readonly _tag: "merge"; readonly closed: 0 | 1; readonly openDelta: number; readonly span: PriceSpan }
  | { readonly _tag: "relabel" }
  | undefined

/**
 * The change to one touched day built from minutes (or new), from its minutes' stored states read
 * before they were merged (`known`): a kline covering a minute leaves the day as it is; a minute
 * stored before and closed by `now` (epoch ms) leaves the day's open count.
 */
export const dayChange = (
  day: TouchedDay,
  state: DayState | undefined,
  known: ReadonlyMap<TickMinute, MinuteState | "kline">,
  now: number
): DayChange => {
  let span: PriceSpan | undefined
  let openDelta = 0
  for (const m of day.minutes) {
    const was = known.get(m)
    if (was === "kline") continue // not a member: the kline stands for this minute
    const closedNow = m.openTime + MINUTE_MS <= now
    if (was === undefined) openDelta += closedNow ? 0 : 1
    else if (was.closed === 0 && closedNow) openDelta -= 1
    span = span === undefined ? m : mergeSpans(span, m)
  }
  if (span !== undefined) {
    // a new row: closed when its 23:59 minute is in and none of its minutes is open
    const closed = span.lastUs >= (day.dayStart + DAY_MS - MINUTE_MS) * 1000 && openDelta === 0 ? 1 : 0
    return { _tag: "merge", closed, openDelta, span }
  }
  // Tick minutes only where 1m klines stand: the values stay, the label says ticks are there too.
  return state?.source === "klines" ? { _tag: "relabel" } : undefined
}

/**
 * The merge of newly stored ticks into the 1m tick candles and the daily candles, on `db`; its
 * statements are prepared once, here. Run the function it returns inside the caller's transaction.
 */
export const makeTickMerge = (db: RawDb) => {
  const dayState = db.prepare("SELECT source, basis, first_us FROM daily_candles WHERE symbol = ? AND date = ?")
  const minuteStates = db.prepare(
    "SELECT source, closed FROM candles WHERE symbol = ? AND interval = '1m' AND source IN ('klines', 'ticks') AND open_time = ?"
  )
  const mergeMinute = db.prepare(
    `INSERT INTO candles (symbol, interval, source, open_time, volume, quote_volume, trades, closed,
       open, high, low, close, first_us, last_us, high_num, high_us, low_num, low_us)
     VALUES (?, '1m', 'ticks', ?, '0', '0', 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ${mergeTickMinutes(SQLITE)}`
  )
  const mergeDay = db.prepare(
    `INSERT INTO daily_candles (symbol, date, volume, quote_volume, trades, source, basis, closed, open_minutes,
       open, high, low, close, first_us, last_us, high_num, high_us, low_num, low_us)
     VALUES (?, ?, '0', '0', 0, 'ticks', '1m', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ${mergeTickDays(SQLITE)}`
  )
  const relabel = db.prepare(
    "UPDATE daily_candles SET source = 'klines+ticks' WHERE symbol = ? AND date = ? AND basis = '1m' AND source = 'klines'"
  )
  const dayMembers = db.prepare(SELECT_DAY_MEMBERS)
  const rebuilds = new Map<string, RawStatement>()

  /** A day written before migration 0003 (no basis or no merge state): built again from all its candles, once. */
  const rebuildDay = (day: TouchedDay) => {
    const rows = dayMembers.all(day.symbol, day.dayStart, day.dayStart + DAY_MS) as unknown as ReadonlyArray<MemberRow>
    const { params, sql } = rebuiltDay(day.symbol, day.dayStart, rows)
    let statement = rebuilds.get(sql)
    if (statement === undefined) rebuilds.set(sql, (statement = db.prepare(sql)))
    statement.run(...params)
  }

  /**
   * Merges newly stored ticks (what the insert reported as new: a replay is not) from the ticks
   * themselves: open from the earliest tick, close from the latest, high/low as max/min, whichever
   * batch brought them; their minutes are built in memory, the days built from minutes take in the
   * changed minutes. What the merge needs of the stored rows: the state of each touched day, and the
   * stored 1m candles at the batch's minutes (`dayChange`). Days built from coarser klines are left
   * alone: ticks do not count there. `now` (epoch ms) says which minutes have closed.
   */
  return (ticks: ReadonlyArray<Tick>, now: number): void => {
    if (ticks.length === 0) return
    for (const day of touchedDays(tickMinutes(ticks))) {
      const state = dayState.get(day.symbol, day.date) as DayState | undefined
      const route = dayRoute(state)
      // The stored state of the day's minutes, read before they are merged.
      const known = new Map<TickMinute, MinuteState | "kline">()
      if (route === "minutes") {
        for (const m of day.minutes) {
          const was = storedMinute(minuteStates.all(m.symbol, m.openTime) as unknown as ReadonlyArray<MinuteState>)
          if (was !== undefined) known.set(m, was)
        }
      }
      for (const m of day.minutes) {
        mergeMinute.run(m.symbol, m.openTime, m.openTime + MINUTE_MS <= now ? 1 : 0, ...spanParams(m))
      }
      if (route === "minutes") {
        const change = dayChange(day, state, known, now)
        if (change?._tag === "merge") mergeDay.run(day.symbol, day.date, change.closed, change.openDelta, ...spanParams(change.span))
        else if (change?._tag === "relabel") relabel.run(day.symbol, day.date)
      } else if (route === "legacy") rebuildDay(day)
    }
  }
}
