import { type SqlClient, SqlSchema } from "@effect/sql"
import { Array as Arr, Clock, Effect, Schema } from "effect"
import { mergeSpans, type PriceSpan, type TickMinute, tickMinutes } from "../domain/CandleMerge.js"
import { utcDate } from "../domain/Candles.js"
import type { Tick } from "../domain/Ticker.js"

// The tick path of CandleRepo.mergeTicks: O(batch), from the newly stored ticks only.

const DAY_MS = 86_400_000
const MINUTE_MS = 60_000

/** `rows` copies of `row`, comma-separated: the VALUES of the multi-row statements below. */
const repeatRows = (rows: number, row: string) => Array.from({ length: rows }, () => row).join(", ")
const PAIR = "(?, ?)"
/** symbol, open_time, closed, then the span (`spanParams`). */
const MINUTE_ROW = "(?, '1m', 'ticks', ?, '0', '0', 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
/** symbol, date, closed, open_minutes, then the span (`spanParams`). */
const DAY_ROW = "(?, ?, '0', '0', 0, 'ticks', '1m', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

/** Rows per multi-row statement: at most 13 parameters each, far below SQLite's limit of 32,766. */
const ROWS_PER_STATEMENT = 1000

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

const spanParams = (s: PriceSpan) => [s.open, s.high, s.low, s.close, s.firstUs, s.lastUs, s.highNum, s.highUs, s.lowNum, s.lowUs]

const DayState = Schema.Struct({
  symbol: Schema.String,
  date: Schema.String,
  source: Schema.String,
  basis: Schema.NullOr(Schema.String),
  first_us: Schema.NullOr(Schema.Number)
})
const MinuteState = Schema.Struct({
  symbol: Schema.String,
  source: Schema.String,
  open_time: Schema.Number,
  closed: Schema.Number
})

/** The touched days of a batch: its tick minutes by (symbol, UTC day). */
interface TouchedDay {
  readonly symbol: string
  readonly dayStart: number
  readonly date: string
  readonly minutes: Array<TickMinute>
}

const minuteKey = (symbol: string, openTime: number) => `${symbol}|${openTime}`

/** The tick merge on `sql`; its statements are built once, with the service. */
export const makeTickMerge = (sql: SqlClient.SqlClient) => {
  /** The stored state of the touched days (one statement per 1000 days). */
  const findDayStates = (days: ReadonlyArray<TouchedDay>) =>
    Effect.forEach(Arr.chunksOf(days, ROWS_PER_STATEMENT), (chunk) =>
      SqlSchema.findAll({
        Request: Schema.Unknown,
        Result: DayState,
        execute: () =>
          sql.unsafe(
            `SELECT symbol, date, source, basis, first_us FROM daily_candles
             WHERE (symbol, date) IN (VALUES ${repeatRows(chunk.length, PAIR)})`,
            chunk.flatMap((d) => [d.symbol, d.date])
          )
      })(undefined)
    ).pipe(Effect.map(Arr.flatten))

  /** The stored 1m candles (klines and tick minutes) at these minutes: covered by a kline? stored before? closed? */
  const findMinuteStates = (minutes: ReadonlyArray<TickMinute>) =>
    Effect.forEach(Arr.chunksOf(minutes, ROWS_PER_STATEMENT), (chunk) =>
      SqlSchema.findAll({
        Request: Schema.Unknown,
        Result: MinuteState,
        execute: () =>
          sql.unsafe(
            `SELECT symbol, source, open_time, closed FROM candles
             WHERE interval = '1m' AND source IN ('klines', 'ticks') AND (symbol, open_time) IN (VALUES ${repeatRows(chunk.length, PAIR)})`,
            chunk.flatMap((m) => [m.symbol, m.openTime])
          )
      })(undefined)
    ).pipe(Effect.map(Arr.flatten))

  const mergeMinutes = (minutes: ReadonlyArray<TickMinute>, now: number) =>
    Effect.forEach(
      Arr.chunksOf(minutes, ROWS_PER_STATEMENT),
      (chunk) =>
        sql.unsafe(
          `INSERT INTO candles (symbol, interval, source, open_time, volume, quote_volume, trades, closed,
             open, high, low, close, first_us, last_us, high_num, high_us, low_num, low_us)
           VALUES ${repeatRows(chunk.length, MINUTE_ROW)}
           ${MERGE_TICK_MINUTES}`,
          chunk.flatMap((m) => [m.symbol, m.openTime, m.openTime + MINUTE_MS <= now ? 1 : 0, ...spanParams(m)])
        ),
      { discard: true }
    )

  const mergeDays = (rows: ReadonlyArray<{ day: TouchedDay; span: PriceSpan; openDelta: number }>) =>
    Effect.forEach(
      Arr.chunksOf(rows, ROWS_PER_STATEMENT),
      (chunk) =>
        sql.unsafe(
          `INSERT INTO daily_candles (symbol, date, volume, quote_volume, trades, source, basis, closed, open_minutes,
             open, high, low, close, first_us, last_us, high_num, high_us, low_num, low_us)
           VALUES ${repeatRows(chunk.length, DAY_ROW)}
           ${MERGE_DAYS}`,
          chunk.flatMap(({ day, openDelta, span }) => [
            day.symbol,
            day.date,
            // a new row: closed when its 23:59 minute is in and none of its minutes is open
            span.lastUs >= (day.dayStart + DAY_MS - MINUTE_MS) * 1000 && openDelta === 0 ? 1 : 0,
            openDelta,
            ...spanParams(span)
          ])
        ),
      { discard: true }
    )

  /**
   * Merges a batch's ticks into the 1m tick candles and the daily candles, from the ticks themselves:
   * their minutes are built in memory and merged with one statement; the days built from minutes take
   * in the changed minutes with one more. Two small lookups per batch find what the merge needs: the
   * state of the touched days, and the stored 1m candles at the batch's minutes (a kline covering one
   * leaves the day as it is; a minute stored before and closed by now leaves the day's open count).
   * Returns the days written before migration 0003, for the caller to rebuild from their candles once
   * (CandleRepo owns that rebuild). Run it inside the caller's transaction.
   */
  return (ticks: ReadonlyArray<Tick>) =>
    Effect.gen(function* () {
      if (ticks.length === 0) return []
      const now = yield* Clock.currentTimeMillis
      const minutes = tickMinutes(ticks)

      const days = new Map<string, TouchedDay>()
      for (const m of minutes) {
        const dayStart = m.openTime - (m.openTime % DAY_MS)
        const key = `${m.symbol}|${dayStart}`
        let day = days.get(key)
        if (day === undefined) days.set(key, (day = { symbol: m.symbol, dayStart, date: utcDate(dayStart), minutes: [] }))
        day.minutes.push(m)
      }
      const touched = [...days.values()]
      const stored = new Map((yield* findDayStates(touched)).map((s) => [`${s.symbol}|${s.date}`, s]))
      const stateOf = (day: TouchedDay) => stored.get(`${day.symbol}|${day.date}`)
      // No row yet, or built from minutes with its merge state: merged. Built from coarser klines: ticks
      // do not count. Written before 0003 (no basis or no merge state): rebuilt from its candles.
      const merged: Array<TouchedDay> = []
      const rebuilt: Array<TouchedDay> = []
      for (const day of touched) {
        const state = stateOf(day)
        if (state === undefined || (state.basis === "1m" && state.first_us !== null)) merged.push(day)
        else if (state.basis === null || state.basis === "1m") rebuilt.push(day)
      }

      const known = yield* findMinuteStates(merged.flatMap((d) => d.minutes))
      const klineMinutes = new Set<string>()
      const tickMinuteClosed = new Map<string, boolean>()
      for (const k of known) {
        if (k.source === "klines") klineMinutes.add(minuteKey(k.symbol, k.open_time))
        else tickMinuteClosed.set(minuteKey(k.symbol, k.open_time), k.closed === 1)
      }

      yield* mergeMinutes(minutes, now)

      const dayRows: Array<{ day: TouchedDay; span: PriceSpan; openDelta: number }> = []
      const relabel: Array<TouchedDay> = []
      for (const day of merged) {
        let span: PriceSpan | undefined
        let openDelta = 0
        for (const m of day.minutes) {
          const key = minuteKey(m.symbol, m.openTime)
          if (klineMinutes.has(key)) continue // not a member: the kline stands for this minute
          const closedNow = m.openTime + MINUTE_MS <= now
          const wasClosed = tickMinuteClosed.get(key)
          if (wasClosed === undefined) openDelta += closedNow ? 0 : 1
          else if (!wasClosed && closedNow) openDelta -= 1
          span = span === undefined ? m : mergeSpans(span, m)
        }
        if (span !== undefined) dayRows.push({ day, span, openDelta })
        else if (stateOf(day)?.source === "klines") relabel.push(day)
      }
      if (dayRows.length > 0) yield* mergeDays(dayRows)
      // Tick minutes only where 1m klines stand: the values stay, the label says ticks are there too.
      yield* Effect.forEach(
        relabel,
        (day) => sql`
          UPDATE daily_candles SET source = 'klines+ticks'
          WHERE symbol = ${day.symbol} AND date = ${day.date} AND basis = '1m' AND source = 'klines'`,
        { discard: true }
      )
      return rebuilt
    })
}
