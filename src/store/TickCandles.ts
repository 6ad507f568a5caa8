import { mergeSpans, type PriceSpan, type TickMinute, tickMinutes } from "../domain/CandleMerge.js"
import type { Tick } from "../domain/Ticker.js"
import { DAY_MS, MINUTE_MS, utcDate } from "../domain/Time.js"
import { type MemberRow, rebuiltDay, SELECT_DAY_MEMBERS } from "./CandleRows.js"
import type { RawDb, RawStatement, RawValue } from "./RawSqlite.js"

// The tick path of the candles: O(batch), from the newly stored ticks only, on the write path's own
// connection (TickWriter.ts), inside its transaction. Every statement is a single-row one prepared
// once: a batch touches a handful of minutes and days, and SQLite runs each in microseconds.

/**
 * The span merge of a stored row (`table`) with its excluded twin: open from the earlier first
 * instant, close from the later last one, high/low on the numbers kept beside the strings (the
 * earlier instant wins a tie). The same for minutes and for minute-based days.
 */
const spanMerge = (t: "candles" | "daily_candles") => `
    open = CASE WHEN excluded.first_us < ${t}.first_us THEN excluded.open ELSE ${t}.open END,
    first_us = MIN(${t}.first_us, excluded.first_us),
    close = CASE WHEN excluded.last_us > ${t}.last_us THEN excluded.close ELSE ${t}.close END,
    last_us = MAX(${t}.last_us, excluded.last_us),
    high = CASE WHEN excluded.high_num > ${t}.high_num OR (excluded.high_num = ${t}.high_num AND excluded.high_us < ${t}.high_us)
      THEN excluded.high ELSE ${t}.high END,
    high_us = CASE WHEN excluded.high_num > ${t}.high_num OR (excluded.high_num = ${t}.high_num AND excluded.high_us < ${t}.high_us)
      THEN excluded.high_us ELSE ${t}.high_us END,
    high_num = MAX(${t}.high_num, excluded.high_num),
    low = CASE WHEN excluded.low_num < ${t}.low_num OR (excluded.low_num = ${t}.low_num AND excluded.low_us < ${t}.low_us)
      THEN excluded.low ELSE ${t}.low END,
    low_us = CASE WHEN excluded.low_num < ${t}.low_num OR (excluded.low_num = ${t}.low_num AND excluded.low_us < ${t}.low_us)
      THEN excluded.low_us ELSE ${t}.low_us END,
    low_num = MIN(${t}.low_num, excluded.low_num),
`

/**
 * The merge of a batch's tick minutes into the stored ones, in SQL: open from the earliest tick,
 * close from the latest, high/low as max/min (the earliest tick winning a tie), whichever batch
 * brought them. It is `mergeSpans` (domain/CandleMerge.ts); a tick merged twice changes nothing.
 * `closed` only ever goes from 0 to 1: a tick candle is never frozen, late ticks still reach it.
 */
const MERGE_TICK_MINUTES = `
  ON CONFLICT (symbol, interval, source, open_time) DO UPDATE SET
    ${spanMerge("candles")}
    closed = MAX(candles.closed, excluded.closed)`

/**
 * The same merge for the day rows built from minutes (basis 1m), plus the count of member minutes not
 * closed (`excluded.open_minutes` is the batch's change to it) and the label: a day of klines that
 * gets tick minutes becomes `klines+ticks`. Closed once its 23:59 minute is in and no minute is open.
 * Rows built from 1d, 1h or 5m klines are left alone: ticks do not count there.
 */
const MERGE_DAYS = `
  ON CONFLICT (symbol, date) DO UPDATE SET
    ${spanMerge("daily_candles")}
    open_minutes = daily_candles.open_minutes + excluded.open_minutes,
    closed = MAX(daily_candles.last_us, excluded.last_us) >= (unixepoch(daily_candles.date) + 86340) * 1000000
      AND daily_candles.open_minutes + excluded.open_minutes = 0,
    source = CASE WHEN daily_candles.source = 'klines' THEN 'klines+ticks' ELSE daily_candles.source END
  WHERE daily_candles.basis = '1m'`

const spanParams = (s: PriceSpan): Array<RawValue> => [
  s.open, s.high, s.low, s.close, s.firstUs, s.lastUs, s.highNum, s.highUs, s.lowNum, s.lowUs
]

interface DayState {
  readonly source: string
  readonly basis: string | null
  readonly first_us: number | null
}
interface MinuteState {
  readonly source: string
  readonly closed: number
}

/** The touched days of a batch: its tick minutes by (symbol, UTC day). */
interface TouchedDay {
  readonly symbol: string
  readonly dayStart: number
  readonly date: string
  readonly minutes: Array<TickMinute>
}

/** A batch's tick minutes by (symbol, UTC day), in the order the days first appear. */
const touchedDays = (minutes: ReadonlyArray<TickMinute>): Array<TouchedDay> => {
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
     ${MERGE_TICK_MINUTES}`
  )
  const mergeDay = db.prepare(
    `INSERT INTO daily_candles (symbol, date, volume, quote_volume, trades, source, basis, closed, open_minutes,
       open, high, low, close, first_us, last_us, high_num, high_us, low_num, low_us)
     VALUES (?, ?, '0', '0', 0, 'ticks', '1m', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ${MERGE_DAYS}`
  )
  // Tick minutes only where 1m klines stand: the values stay, the label says ticks are there too.
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

  /** Merges one touched day that is built from minutes (or new) with its minutes, already merged into `candles`. */
  const mergeIntoDay = (day: TouchedDay, state: DayState | undefined, known: ReadonlyMap<TickMinute, MinuteState | "kline">, now: number) => {
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
      mergeDay.run(day.symbol, day.date, closed, openDelta, ...spanParams(span))
    } else if (state?.source === "klines") relabel.run(day.symbol, day.date)
  }

  /**
   * Merges newly stored ticks (what the insert reported as new: a replay is not) from the ticks
   * themselves: open from the earliest tick, close from the latest, high/low as max/min, whichever
   * batch brought them; their minutes are built in memory, the days built from minutes take in the
   * changed minutes. What the merge needs of the stored rows: the state of each touched day, and the
   * stored 1m candles at the batch's minutes (a kline covering one leaves the day as it is; a minute
   * stored before and closed by now leaves the day's open count). Days built from coarser klines are
   * left alone: ticks do not count there. `now` (epoch ms) says which minutes have closed.
   */
  return (ticks: ReadonlyArray<Tick>, now: number): void => {
    if (ticks.length === 0) return
    for (const day of touchedDays(tickMinutes(ticks))) {
      const state = dayState.get(day.symbol, day.date) as DayState | undefined
      const fromMinutes = state === undefined || (state.basis === "1m" && state.first_us !== null)
      const legacy = !fromMinutes && (state.basis === null || state.basis === "1m")
      // The stored state of the day's minutes, read before they are merged.
      const known = new Map<TickMinute, MinuteState | "kline">()
      if (fromMinutes) {
        for (const m of day.minutes) {
          let tickState: MinuteState | undefined
          for (const row of minuteStates.all(m.symbol, m.openTime) as unknown as ReadonlyArray<MinuteState>) {
            if (row.source === "klines") {
              known.set(m, "kline")
              tickState = undefined
              break
            }
            tickState = row
          }
          if (tickState !== undefined) known.set(m, tickState)
        }
      }
      for (const m of day.minutes) {
        mergeMinute.run(m.symbol, m.openTime, m.openTime + MINUTE_MS <= now ? 1 : 0, ...spanParams(m))
      }
      if (fromMinutes) mergeIntoDay(day, state, known, now)
      else if (legacy) rebuildDay(day)
    }
  }
}
