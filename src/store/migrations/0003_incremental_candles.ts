import { SqlClient } from "@effect/sql"
import { Array as Arr, Clock, Effect, Schema } from "effect"
import { buildDay, dayMergeState, mergeSpans, type TickMinute, tickMinutes } from "../../domain/CandleMerge.js"
import { DAY_MS, MINUTE_MS, utcDate } from "../../domain/Time.js"

/**
 * Incremental candles: what merging a batch's ticks into the stored candles needs, so a batch costs
 * O(batch) instead of re-reading the ticks and the whole day.
 *
 * - `candles`: a tick minute (source `ticks`) keeps the instants of its open and close ticks
 *   (`first_us`, `last_us`) and of its extremes (`high_us`, `low_us`), and the extremes as numbers
 *   (`high_num`, `low_num`) to compare them in SQL without parsing decimal strings there. Null on klines.
 * - `daily_candles`: `basis` says what the row is built from (`1d`, `1h`, `5m` klines, or `1m`:
 *   minutes, 1m klines and tick minutes); a day built from minutes keeps the same span over its
 *   member minutes and `open_minutes`, how many of them are not closed yet.
 *
 * The tick minutes written before were frozen once closed, so events of a past minute arriving in a
 * later batch never reached them: they are derived again here from the stored ticks, and the days
 * holding any are rebuilt. Other days keep their values and no basis; the consumer rebuilds such a
 * day from its candles the first time it stores ticks of it. Costs one pass over the ticks.
 */
const TickRow = Schema.Struct({ symbol: Schema.String, ts_us: Schema.Number, last_price: Schema.String })
const DayRow = Schema.Struct({ symbol: Schema.String, day: Schema.Number })
const CandleRow = Schema.Struct({
  symbol: Schema.String,
  interval: Schema.Literal("1m", "5m", "1h", "1d"),
  source: Schema.Literal("klines", "ticks"),
  open_time: Schema.Number,
  open: Schema.String,
  high: Schema.String,
  low: Schema.String,
  close: Schema.String,
  volume: Schema.String,
  quote_volume: Schema.String,
  trades: Schema.Number,
  closed: Schema.Number,
  first_us: Schema.NullOr(Schema.Number),
  last_us: Schema.NullOr(Schema.Number),
  high_num: Schema.NullOr(Schema.Number),
  high_us: Schema.NullOr(Schema.Number),
  low_num: Schema.NullOr(Schema.Number),
  low_us: Schema.NullOr(Schema.Number)
})

const PAGE = 20_000

export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const decode = <A, I>(schema: Schema.Schema<A, I>) => Schema.decodeUnknown(Schema.Array(schema))

  for (const column of ["first_us INTEGER", "last_us INTEGER", "high_num REAL", "high_us INTEGER", "low_num REAL", "low_us INTEGER"]) {
    yield* sql.unsafe(`ALTER TABLE candles ADD COLUMN ${column}`)
  }
  for (const column of [
    "basis TEXT",
    "first_us INTEGER",
    "last_us INTEGER",
    "high_num REAL",
    "high_us INTEGER",
    "low_num REAL",
    "low_us INTEGER",
    "open_minutes INTEGER"
  ]) {
    yield* sql.unsafe(`ALTER TABLE daily_candles ADD COLUMN ${column}`)
  }

  // ---- tick minutes, derived again from the stored ticks

  const now = yield* Clock.currentTimeMillis
  const days = new Set<string>()
  const dayKey = (symbol: string, openTime: number) => `${symbol}|${openTime - (openTime % DAY_MS)}`
  for (const { day, symbol } of yield* sql`
    SELECT DISTINCT symbol, open_time - open_time % 86400000 AS day FROM candles WHERE source = 'ticks'`.pipe(
    Effect.flatMap(decode(DayRow))
  )) {
    days.add(`${symbol}|${day}`)
  }
  yield* sql`DELETE FROM candles WHERE source = 'ticks'`

  const write = (minutes: ReadonlyArray<TickMinute>) =>
    Effect.forEach(
      Arr.chunksOf(minutes, 1000),
      (chunk) =>
        sql`INSERT INTO candles ${sql.insert(
          chunk.map((m) => ({
            symbol: m.symbol,
            interval: "1m",
            source: "ticks",
            open_time: m.openTime,
            open: m.open,
            high: m.high,
            low: m.low,
            close: m.close,
            volume: "0",
            quote_volume: "0",
            trades: 0,
            closed: m.openTime + MINUTE_MS <= now ? 1 : 0,
            first_us: m.firstUs,
            last_us: m.lastUs,
            high_num: m.highNum,
            high_us: m.highUs,
            low_num: m.lowNum,
            low_us: m.lowUs
          }))
        )}`,
      { discard: true }
    )

  // Pages in key order (symbol, ts_us): only a page's last minute can go on in the next page.
  let after: { readonly symbol: string; readonly ts: number } | undefined
  let carry: TickMinute | undefined
  for (;;) {
    const page = yield* (after === undefined
      ? sql`SELECT symbol, ts_us, last_price FROM ticks ORDER BY symbol, ts_us LIMIT ${PAGE}`
      : sql`SELECT symbol, ts_us, last_price FROM ticks WHERE (symbol, ts_us) > (${after.symbol}, ${after.ts})
            ORDER BY symbol, ts_us LIMIT ${PAGE}`
    ).pipe(Effect.flatMap(decode(TickRow)))
    if (page.length === 0) break
    const last = page[page.length - 1]!
    after = { symbol: last.symbol, ts: last.ts_us }
    const minutes = tickMinutes(
      page.map((r) => ({ symbol: r.symbol, tsMicros: r.ts_us, price: Number(r.last_price), event: { lastPrice: r.last_price } }))
    )
    if (carry !== undefined) {
      const held = carry
      const i = minutes.findIndex((m) => m.symbol === held.symbol && m.openTime === held.openTime)
      if (i < 0) minutes.push(held)
      else minutes[i] = { symbol: held.symbol, openTime: held.openTime, ...mergeSpans(held, minutes[i]!) }
    }
    const lastOpen = Math.floor(last.ts_us / (MINUTE_MS * 1000)) * MINUTE_MS
    carry = minutes.splice(minutes.findIndex((m) => m.symbol === last.symbol && m.openTime === lastOpen), 1)[0]
    for (const m of minutes) days.add(dayKey(m.symbol, m.openTime))
    yield* write(minutes)
  }
  if (carry !== undefined) {
    days.add(dayKey(carry.symbol, carry.openTime))
    yield* write([carry])
  }

  // ---- the days holding tick minutes (or holding them before), rebuilt from their candles

  for (const key of days) {
    const [symbol, day] = key.split("|") as [string, string]
    const dayStart = Number(day)
    const date = utcDate(dayStart)
    const rows = yield* sql`
      SELECT symbol, interval, source, open_time, open, high, low, close, volume, quote_volume, trades, closed,
        first_us, last_us, high_num, high_us, low_num, low_us
      FROM candles WHERE symbol = ${symbol} AND open_time >= ${dayStart} AND open_time < ${dayStart + DAY_MS}`.pipe(
      Effect.flatMap(decode(CandleRow))
    )
    const members = rows.map((r) => ({
      symbol: r.symbol,
      interval: r.interval,
      source: r.source,
      openTime: r.open_time,
      open: r.open,
      high: r.high,
      low: r.low,
      close: r.close,
      volume: r.volume,
      quoteVolume: r.quote_volume,
      trades: r.trades,
      closed: r.closed === 1,
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
    }))
    const built = buildDay(members)
    if (built === undefined) {
      yield* sql`DELETE FROM daily_candles WHERE symbol = ${symbol} AND date = ${date}`
      continue
    }
    const state = built.basis === "1m" ? dayMergeState(members) : undefined
    const c = built.candle
    yield* sql`INSERT OR REPLACE INTO daily_candles ${sql.insert({
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
    })}`
  }
})
