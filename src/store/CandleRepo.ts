import { SqlClient, SqlSchema } from "@effect/sql"
import { Array as Arr, Clock, Effect, Option, Schema } from "effect"
import {
  bucketStart,
  buildDay,
  type Candle,
  type DayMember,
  dayMergeState,
  type DayMergeState,
  Interval,
  mergeCandleSources,
  mergeSpans,
  type PriceSpan,
  type TickMinute,
  tickMinutes,
  utcDate
} from "../domain/Candles.js"
import type { Tick } from "../domain/Ticker.js"

export { buildDay, type CandleSource } from "../domain/Candles.js"

const DAY_MS = 86_400_000
const MINUTE_MS = 60_000

const CandleRow = Schema.Struct({
  symbol: Schema.String,
  interval: Interval,
  source: Schema.Literal("klines", "ticks"),
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
type CandleRow = typeof CandleRow.Type

/** A stored candle with the span a tick minute keeps for merging (null on klines). */
const MemberRow = Schema.Struct({
  ...CandleRow.fields,
  first_us: Schema.NullOr(Schema.Number),
  last_us: Schema.NullOr(Schema.Number),
  high_num: Schema.NullOr(Schema.Number),
  high_us: Schema.NullOr(Schema.Number),
  low_num: Schema.NullOr(Schema.Number),
  low_us: Schema.NullOr(Schema.Number)
})
type MemberRow = typeof MemberRow.Type

const toCandle = (r: CandleRow): Candle => ({
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

/** One row of the gold layer: the day's candle and which source it was built from. */
export const DailyCandle = Schema.Struct({
  symbol: Schema.String,
  date: Schema.String,
  open: Schema.String,
  high: Schema.String,
  low: Schema.String,
  close: Schema.String,
  volume: Schema.String,
  quote_volume: Schema.String,
  trades: Schema.Number,
  closed: Schema.Number,
  source: Schema.String
})
export type DailyCandle = typeof DailyCandle.Type

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
 * The merge of a batch's tick minutes into the stored ones, in SQL: open from the earliest tick,
 * close from the latest, high/low as max/min (the earliest tick winning a tie), whichever batch
 * brought them. It is `mergeSpans` (domain/Candles.ts); a tick merged twice changes nothing.
 * `closed` only ever goes from 0 to 1: a tick candle is never frozen, late ticks still reach it.
 */
const MERGE_TICK_MINUTES = `
  ON CONFLICT (symbol, interval, source, open_time) DO UPDATE SET
    open = CASE WHEN excluded.first_us < candles.first_us THEN excluded.open ELSE candles.open END,
    first_us = MIN(candles.first_us, excluded.first_us),
    close = CASE WHEN excluded.last_us > candles.last_us THEN excluded.close ELSE candles.close END,
    last_us = MAX(candles.last_us, excluded.last_us),
    high = CASE WHEN excluded.high_num > candles.high_num OR (excluded.high_num = candles.high_num AND excluded.high_us < candles.high_us)
      THEN excluded.high ELSE candles.high END,
    high_us = CASE WHEN excluded.high_num > candles.high_num OR (excluded.high_num = candles.high_num AND excluded.high_us < candles.high_us)
      THEN excluded.high_us ELSE candles.high_us END,
    high_num = MAX(candles.high_num, excluded.high_num),
    low = CASE WHEN excluded.low_num < candles.low_num OR (excluded.low_num = candles.low_num AND excluded.low_us < candles.low_us)
      THEN excluded.low ELSE candles.low END,
    low_us = CASE WHEN excluded.low_num < candles.low_num OR (excluded.low_num = candles.low_num AND excluded.low_us < candles.low_us)
      THEN excluded.low_us ELSE candles.low_us END,
    low_num = MIN(candles.low_num, excluded.low_num),
    closed = MAX(candles.closed, excluded.closed)`

/**
 * The same merge for the day rows built from minutes (basis 1m), plus the count of member minutes not
 * closed (`excluded.open_minutes` is the batch's change to it) and the label: a day of klines that
 * gets tick minutes becomes `klines+ticks`. Closed once its 23:59 minute is in and no minute is open.
 * Rows built from 1d, 1h or 5m klines are left alone: ticks do not count there.
 */
const MERGE_DAYS = `
  ON CONFLICT (symbol, date) DO UPDATE SET
    open = CASE WHEN excluded.first_us < daily_candles.first_us THEN excluded.open ELSE daily_candles.open END,
    first_us = MIN(daily_candles.first_us, excluded.first_us),
    close = CASE WHEN excluded.last_us > daily_candles.last_us THEN excluded.close ELSE daily_candles.close END,
    last_us = MAX(daily_candles.last_us, excluded.last_us),
    high = CASE WHEN excluded.high_num > daily_candles.high_num OR (excluded.high_num = daily_candles.high_num AND excluded.high_us < daily_candles.high_us)
      THEN excluded.high ELSE daily_candles.high END,
    high_us = CASE WHEN excluded.high_num > daily_candles.high_num OR (excluded.high_num = daily_candles.high_num AND excluded.high_us < daily_candles.high_us)
      THEN excluded.high_us ELSE daily_candles.high_us END,
    high_num = MAX(daily_candles.high_num, excluded.high_num),
    low = CASE WHEN excluded.low_num < daily_candles.low_num OR (excluded.low_num = daily_candles.low_num AND excluded.low_us < daily_candles.low_us)
      THEN excluded.low ELSE daily_candles.low END,
    low_us = CASE WHEN excluded.low_num < daily_candles.low_num OR (excluded.low_num = daily_candles.low_num AND excluded.low_us < daily_candles.low_us)
      THEN excluded.low_us ELSE daily_candles.low_us END,
    low_num = MIN(daily_candles.low_num, excluded.low_num),
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

/** Candles (silver) and daily candles (gold): klines rebuild the days they touch, ticks merge into them. */
export class CandleRepo extends Effect.Service<CandleRepo>()("store/CandleRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const dayCandles = SqlSchema.findAll({
      Request: Schema.Struct({ symbol: Schema.String, from: Schema.Number, to: Schema.Number }),
      Result: MemberRow,
      execute: ({ from, symbol, to }) => sql`
        SELECT * FROM candles WHERE symbol = ${symbol} AND open_time >= ${from} AND open_time < ${to}`
    })

    const writeDay = (symbol: string, date: string, built: NonNullable<ReturnType<typeof buildDay>>, state: DayMergeState | undefined) => {
      const c = built.candle
      const row = {
        symbol,
        date,
        open: c.open,
        high: c.high,
        low: c.low,
        close: c.close,
        volume: c.volume,
        quote_volume: c.quoteVolume,
        trades: c.trades,
        closed: c.closed ? 1 : 0,
        source: built.source,
        basis: built.basis,
        first_us: state?.span.firstUs ?? null,
        last_us: state?.span.lastUs ?? null,
        high_num: state?.span.highNum ?? null,
        high_us: state?.span.highUs ?? null,
        low_num: state?.span.lowNum ?? null,
        low_us: state?.span.lowUs ?? null,
        open_minutes: state?.openMinutes ?? null
      }
      return sql`INSERT OR REPLACE INTO daily_candles ${sql.insert(row)}`
    }

    /** Builds the day from all its stored candles (`buildDay`), with the merge state when it is built from minutes. */
    const rebuildDay = (symbol: string, dayStart: number) =>
      Effect.gen(function* () {
        const rows = yield* dayCandles({ symbol, from: dayStart, to: dayStart + DAY_MS })
        const members = rows.map(toMember)
        const built = buildDay(members)
        const date = utcDate(dayStart)
        if (built === undefined) {
          yield* sql`DELETE FROM daily_candles WHERE symbol = ${symbol} AND date = ${date}`
          return
        }
        yield* writeDay(symbol, date, built, built.basis === "1m" ? dayMergeState(members) : undefined)
      })

    const rebuildDays = (candles: ReadonlyArray<Candle>) =>
      Effect.forEach(
        Arr.dedupe(candles.map((c) => `${c.symbol}|${bucketStart(c.openTime, "1d")}`)),
        (key) => {
          const [symbol, day] = key.split("|") as [string, string]
          return rebuildDay(symbol, Number(day))
        },
        { discard: true }
      )

    const writeKlines = (candles: ReadonlyArray<Candle>) =>
      Effect.forEach(
        Arr.chunksOf(candles, 500),
        (chunk) =>
          sql`INSERT INTO candles ${sql.insert(
            chunk.map((c) => ({
              symbol: c.symbol,
              interval: c.interval,
              source: "klines",
              open_time: c.openTime,
              open: c.open,
              high: c.high,
              low: c.low,
              close: c.close,
              volume: c.volume,
              quote_volume: c.quoteVolume,
              trades: c.trades,
              closed: c.closed ? 1 : 0
            }))
          )}
          ON CONFLICT (symbol, interval, source, open_time) DO UPDATE SET
            open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
            volume = excluded.volume, quote_volume = excluded.quote_volume, trades = excluded.trades,
            closed = excluded.closed
          WHERE candles.closed = 0`,
        { discard: true }
      )

    /**
     * Stores Binance klines (a closed kline is final; the open one is replaced until it closes) and
     * rebuilds the daily candles of their days from all their candles. Tick candles come from
     * `mergeTicks` only.
     */
    const upsert = (candles: ReadonlyArray<Candle>, _source: "klines") =>
      Effect.gen(function* () {
        if (candles.length === 0) return
        yield* writeKlines(candles)
        yield* rebuildDays(candles)
      }).pipe(sql.withTransaction, Effect.withSpan("CandleRepo.upsert"))

    // ---- the tick path: O(batch), from the newly stored ticks only

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
     * Merges newly stored ticks (what `TickRepo.insertMany` returns; call both in one transaction, so
     * that stored ticks never miss their candles: a replay of them is not new) into the
     * 1m tick candles and the daily candles, from the ticks themselves: their minutes are built in
     * memory and merged with one statement; the days built from minutes take in the changed minutes
     * with one more. Two small lookups per batch find what the merge needs: the state of the touched
     * days, and the stored 1m candles at the batch's minutes (a kline covering one leaves the day as
     * it is; a minute stored before and closed by now leaves the day's open count). A day written
     * before migration 0003 is rebuilt from its candles once. Cost: O(batch), never O(day).
     */
    const mergeTicks = (ticks: ReadonlyArray<Tick>) =>
      Effect.gen(function* () {
        if (ticks.length === 0) return
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
        yield* Effect.forEach(rebuilt, (day) => rebuildDay(day.symbol, day.dayStart), { discard: true })
      }).pipe(sql.withTransaction, Effect.withSpan("CandleRepo.mergeTicks"))

    const LatestOpen = Schema.Struct({ open_time: Schema.NullOr(Schema.Number) })
    /** Open time of the newest closed kline stored for (symbol, interval): where a backfill resumes. */
    const lastClosedKline = (symbol: string, interval: Interval) =>
      SqlSchema.single({
        Request: Schema.Void,
        Result: LatestOpen,
        execute: () => sql`
          SELECT MAX(open_time) AS open_time FROM candles
          WHERE symbol = ${symbol} AND interval = ${interval} AND source = 'klines' AND closed = 1`
      })(undefined).pipe(Effect.map((r) => Option.fromNullable(r.open_time)))

    const findDaily = SqlSchema.findAll({
      Request: Schema.Struct({ symbol: Schema.String, from: Schema.String, to: Schema.String }),
      Result: DailyCandle,
      execute: ({ from, symbol, to }) => sql`
        SELECT symbol, date, open, high, low, close, volume, quote_volume, trades, closed, source
        FROM daily_candles WHERE symbol = ${symbol} AND date >= ${from} AND date <= ${to} ORDER BY date`
    })

    const findCandles = SqlSchema.findAll({
      Request: Schema.Struct({ symbol: Schema.String, interval: Interval, from: Schema.Number, to: Schema.Number }),
      Result: CandleRow,
      execute: ({ from, interval, symbol, to }) => sql`
        SELECT symbol, interval, source, open_time, open, high, low, close, volume, quote_volume, trades, closed
        FROM candles WHERE symbol = ${symbol} AND interval = ${interval}
        AND open_time >= ${from} AND open_time < ${to} ORDER BY open_time, source`
    })

    return {
      upsert,
      mergeTicks,
      lastClosedKline,
      /** Daily candles of `symbol` with `from <= date <= to` (YYYY-MM-DD), oldest first. */
      daily: (symbol: string, from: string, to: string) => findDaily({ symbol, from, to }),
      /** Stored candles of one interval in [from, to) (epoch ms); klines win over tick candles. */
      candles: (symbol: string, interval: Interval, from: number, to: number) =>
        findCandles({ symbol, interval, from, to }).pipe(
          Effect.map((rows) =>
            mergeCandleSources(
              rows.filter((r) => r.source === "klines").map(toCandle),
              rows.filter((r) => r.source === "ticks").map(toCandle)
            )
          )
        )
    } as const
  })
}) {}
