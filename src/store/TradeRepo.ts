import { SqlError } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import { readerConnection, type RawStatement, type RawValue } from "./RawSqlite.js"

const MINUTE_MS = 60_000

/** Where a read of trades in (trade time, id) order stands: the last trade handed out. */
export interface TradeKey {
  readonly timeMicros: number
  readonly id: number
}

export interface TradesJson {
  /** The trades as a JSON array in contract form, ready to send. */
  readonly json: string
  readonly rows: number
  /** The last trade of a full range page, where the next page starts; null otherwise. */
  readonly last: TradeKey | null
  /** Whether more trades follow in the range asked (range reads only). */
  readonly more: boolean
}

/** A range of aggregate trade ids, both ends included. */
export interface IdRange {
  readonly fromId: number
  readonly toId: number
}

/** What one pass over the trades of a time window found. */
export interface TradeScan {
  readonly count: number
  readonly firstId: number | null
  readonly lastId: number | null
  /** Ids absent between the stored ones (and after `previousId`, when given), lowest first. */
  readonly holes: ReadonlyArray<IdRange>
}

/** A `trade_gaps` row. */
export const TradeGap = Schema.Struct({
  from_id: Schema.Number,
  to_id: Schema.Number,
  state: Schema.Literal("missing", "repaired", "unrepairable"),
  reason: Schema.NullOr(Schema.String),
  detected_at: Schema.String,
  resolved_at: Schema.NullOr(Schema.String)
})
export type TradeGap = typeof TradeGap.Type
const decodeGaps = Schema.decodeUnknownSync(Schema.Array(TradeGap))

/**
 * A trade row for the CSV, as an array in column order: id, time (µs), symbol, price, quantity,
 * first id, last id, buyer-maker (0/1). Read raw: every column was checked when it was written, and a
 * Schema per row would double the cost of a day of millions of rows.
 */
export type TradeCsvRow = readonly [number, number, string, string, string, number, number, number]

/** The statement options the raw reads use (better-sqlite3 has them; RawSqlite types only the common slice). */
interface RowsStatement extends RawStatement {
  pluck(on?: boolean): RowsStatement
  raw(on?: boolean): RowsStatement
  all(...params: ReadonlyArray<RawValue>): Array<any>
  get(...params: ReadonlyArray<RawValue>): any
}

const JsonPage = Schema.Struct({ json: Schema.String, rows: Schema.Number })
const decodePage = Schema.decodeUnknownSync(JsonPage)
const MaybeTrade = Schema.UndefinedOr(Schema.Struct({ id: Schema.Number, us: Schema.Number }))
const decodeTrade = Schema.decodeUnknownSync(MaybeTrade)

/** The contract JSON of a `trades` row, built by SQLite (what `domain/Trade.tradeJson` writes). */
export const TRADE_JSON =
  "json_object('symbol', symbol, 'agg_trade_id', agg_trade_id, 'price', price, 'quantity', quantity, " +
  "'first_trade_id', first_trade_id, 'last_trade_id', last_trade_id, 'trade_time', " +
  "strftime('%Y-%m-%dT%H:%M:%S', trade_time_us / 1000000, 'unixepoch') || '.' || printf('%06d', trade_time_us % 1000000) || '+00:00', " +
  "'is_buyer_maker', json(CASE WHEN is_buyer_maker THEN 'true' ELSE 'false' END), 'source', source)"

/** Index entries one step of a long read covers: ~20 ms of SQLite, then the event loop gets a turn. */
export const SCAN_CHUNK = 100_000

/**
 * One real turn of the event loop: the reads are synchronous, so a pass over millions of rows would
 * otherwise hold HTTP, timers and the consumer for its whole length.
 */
const yieldToEventLoop = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/** Runs of closed minutes with no closed 1m kline, and how many minutes have one. */
export interface MinuteCoverage {
  readonly covered: number
  readonly missing: ReadonlyArray<{ readonly fromMs: number; readonly toMs: number }>
}

/**
 * Runs of minutes with no closed 1m kline. The minutes are those starting in [floor(fromMs),
 * floor(toMs)) on the minute grid: the minute holding `fromMs` counts, the one holding `toMs` (still
 * open then) does not. `opens` reads the open times of the closed 1m klines in [from, to), in order;
 * it is called a day at a time, with a turn of the event loop between days. Shared by both stores.
 */
export const minuteCoverageWith =
  (opens: (symbol: string, fromMs: number, toMs: number) => Effect.Effect<ReadonlyArray<number>, SqlError.SqlError>) =>
  (symbol: string, fromMs: number, toMs: number): Effect.Effect<MinuteCoverage, SqlError.SqlError> =>
    Effect.gen(function* () {
      const first = Math.floor(fromMs / MINUTE_MS) * MINUTE_MS
      const end = Math.floor(toMs / MINUTE_MS) * MINUTE_MS
      const missing: Array<{ fromMs: number; toMs: number }> = []
      let covered = 0
      let expected = first // the next minute a kline should start at
      for (let day = first; day < end; day += 1440 * MINUTE_MS) {
        if (day > first) yield* yieldToEventLoop
        for (const open of yield* opens(symbol, day, Math.min(end, day + 1440 * MINUTE_MS))) {
          if (open < expected) continue // off the minute grid: not a minute of its own
          if (open > expected) missing.push({ fromMs: expected, toMs: open })
          covered++
          expected = open + MINUTE_MS
        }
      }
      if (expected < end) missing.push({ fromMs: expected, toMs: end })
      return { covered, missing }
    })

/**
 * Reads of the aggregate trades and their gaps (TradeWriter writes them), every read bounded. This
 * is the SQLite adapter (pg/PgTradeRepo the PostgreSQL one, built with `TradeRepo.make`): a read
 * connection of its own with statements prepared once. Trades are read in (trade time, id)
 * order through the `trades_time` index: Binance numbers aggregate trades in the order they happen,
 * so that is id order, and a key of both never loses or repeats trades sharing a microsecond.
 */
export class TradeRepo extends Effect.Service<TradeRepo>()("store/TradeRepo", {
  scoped: Effect.gen(function* () {
    const reader = yield* readerConnection("the trade store for reading")
    const prepare = (text: string) => reader.prepare(text) as RowsStatement

    const latestStatement = prepare(`
      SELECT json_group_array(${TRADE_JSON} ORDER BY agg_trade_id DESC) AS json, count(*) AS rows
      FROM (SELECT * FROM trades WHERE symbol = ? ORDER BY agg_trade_id DESC LIMIT ?)`)
    // rows after the key (t, id) and before `end`: the first page starts after (start, -1)
    const after = "symbol = ? AND (trade_time_us, agg_trade_id) > (?, ?) AND trade_time_us < ?"
    const rangeStatement = prepare(`
      SELECT json_group_array(${TRADE_JSON} ORDER BY trade_time_us, agg_trade_id) AS json, count(*) AS rows
      FROM (SELECT * FROM trades WHERE ${after} ORDER BY trade_time_us, agg_trade_id LIMIT ?)`)
    const lastKeyStatement = prepare(`
      SELECT trade_time_us AS us, agg_trade_id AS id FROM trades WHERE ${after}
      ORDER BY trade_time_us, agg_trade_id LIMIT 1 OFFSET ?`)
    const moreStatement = prepare(`SELECT EXISTS (SELECT 1 FROM trades WHERE ${after}) AS more`)
    const idsStatement = prepare(`
      SELECT agg_trade_id FROM trades WHERE ${after} ORDER BY trade_time_us, agg_trade_id LIMIT ?`).pluck()
    const timeOfStatement = prepare("SELECT trade_time_us FROM trades WHERE symbol = ? AND agg_trade_id = ?").pluck()
    const firstStatement = prepare(
      "SELECT agg_trade_id AS id, trade_time_us AS us FROM trades WHERE symbol = ? ORDER BY agg_trade_id LIMIT 1"
    )
    const lastBeforeStatement = prepare(`
      SELECT agg_trade_id AS id, trade_time_us AS us FROM trades WHERE symbol = ? AND trade_time_us < ?
      ORDER BY trade_time_us DESC, agg_trade_id DESC LIMIT 1`)
    const csvStatement = prepare(`
      SELECT agg_trade_id, trade_time_us, symbol, price, quantity, first_trade_id, last_trade_id, is_buyer_maker
      FROM trades WHERE symbol = ? AND agg_trade_id > ? AND agg_trade_id <= ? AND trade_time_us >= ? AND trade_time_us < ?
      ORDER BY agg_trade_id LIMIT ?`).raw()
    const gapsStatement = prepare(`
      SELECT from_id, to_id, state, reason, detected_at, resolved_at FROM trade_gaps WHERE symbol = ? AND to_id > ? ORDER BY from_id`)
    const pendingGapStatement = prepare(`
      SELECT EXISTS (SELECT 1 FROM trade_gaps WHERE symbol = ? AND state = 'missing' AND from_id <= ? AND to_id >= ?) AS pending`)
    const minutesStatement = prepare(`
      SELECT open_time FROM candles WHERE symbol = ? AND interval = '1m' AND source = 'klines' AND closed = 1
      AND open_time >= ? AND open_time < ? ORDER BY open_time`).pluck()
    // distinct symbols by hopping through the primary key, one lookup per symbol instead of a scan
    const symbolsStatement = prepare(`
      WITH RECURSIVE s(symbol) AS (
        SELECT min(symbol) FROM trades
        UNION ALL SELECT (SELECT min(symbol) FROM trades WHERE symbol > s.symbol) FROM s WHERE s.symbol IS NOT NULL
      ) SELECT symbol FROM s WHERE symbol IS NOT NULL`).pluck()

    /** One synchronous read on the reader; a failure (SQLITE_BUSY, a corrupt file) is a SqlError. */
    const read = <A>(what: string, f: () => A) =>
      Effect.try({ try: f, catch: (cause) => new SqlError.SqlError({ cause, message: `Failed to read ${what}` }) })
    const page = (row: unknown): TradesJson => ({ ...decodePage(row), last: null, more: false })
    const toTrade = (row: unknown): Option.Option<TradeKey> =>
      Option.map(Option.fromNullable(decodeTrade(row)), ({ id, us }) => ({ id, timeMicros: us }))

    /**
     * One page of a range, its last key and whether more follow, read in one transaction: a trade
     * committed between the statements could otherwise shift the key and repeat a row on the next page.
     */
    const rangePage = reader.transaction(
      (symbol: string, startUs: number, endUs: number, limit: number, cursor: TradeKey | undefined): TradesJson => {
        const from = cursor === undefined || cursor.timeMicros < startUs ? { timeMicros: startUs, id: -1 } : cursor
        const answer = page(rangeStatement.get(symbol, from.timeMicros, from.id, endUs, limit))
        if (answer.rows < limit) return answer
        // the page's last key, which the aggregate cannot name: `limit` index entries, no rows
        const last = decodeTrade(lastKeyStatement.get(symbol, from.timeMicros, from.id, endUs, limit - 1))!
        const key = { timeMicros: last.us, id: last.id }
        return { ...answer, last: key, more: moreStatement.get(symbol, key.timeMicros, key.id, endUs)?.["more"] === 1 }
      }
    )

    /** One pass over the trades of [fromUs, toUs), SCAN_CHUNK index entries at a time with a turn of the event loop between. */
    const scan = (symbol: string, fromUs: number, toUs: number, previousId: number | null): Effect.Effect<TradeScan, SqlError.SqlError> =>
      Effect.gen(function* () {
        let key: TradeKey = { timeMicros: fromUs, id: -1 }
        let count = 0
        let firstId: number | null = null
        let lastId: number | null = null
        let prev = previousId
        const holes: Array<IdRange> = []
        for (;;) {
          const ids: Array<number> = yield* read("trade ids", () =>
            idsStatement.all(symbol, key.timeMicros, key.id, toUs, SCAN_CHUNK)
          )
          for (const id of ids) {
            if (prev !== null && id > prev + 1) holes.push({ fromId: prev + 1, toId: id - 1 })
            if (firstId === null || id < firstId) firstId = id
            if (lastId === null || id > lastId) lastId = id
            if (prev === null || id > prev) prev = id
          }
          count += ids.length
          if (ids.length < SCAN_CHUNK) return { count, firstId, lastId, holes }
          const id = ids[ids.length - 1]!
          key = { id, timeMicros: yield* read("a trade time", (): number => timeOfStatement.get(symbol, id)) }
          yield* yieldToEventLoop
        }
      })

    const minuteCoverage = minuteCoverageWith((symbol, fromMs, toMs) =>
      read("1m klines", (): ReadonlyArray<number> => minutesStatement.all(symbol, fromMs, toMs))
    )

    return {
      /** The newest `limit` trades (highest ids first) as one JSON array. */
      latestJson: (symbol: string, limit: number) => read("the latest trades", () => page(latestStatement.get(symbol, limit))),
      /**
       * Trades with startUs <= trade time < endUs after `cursor` (the last trade of the previous page),
       * oldest first, as one JSON array, and whether more follow before `endUs`.
       */
      rangeJson: (symbol: string, startUs: number, endUs: number, limit: number, cursor?: TradeKey) =>
        read("a range of trades", () => rangePage(symbol, startUs, endUs, limit, cursor)),
      /** Counts the trades of [fromUs, toUs) and finds the ids missing among them (after `previousId`, when given). */
      scan,
      /**
       * Up to `limit` trades of [fromUs, toUs) with afterId < id <= maxId, by id, as CSV rows. The id
       * bounds keep the primary-key walk inside the window's ids (see `scan`).
       */
      csvRows: (symbol: string, fromUs: number, toUs: number, afterId: number, maxId: number, limit: number) =>
        read("trades for CSV", (): ReadonlyArray<TradeCsvRow> => csvStatement.all(symbol, afterId, maxId, fromUs, toUs, limit)),
      /** The symbol's first stored trade (lowest id): where its history begins. */
      firstTrade: (symbol: string) => read("the first trade", () => toTrade(firstStatement.get(symbol))),
      /** The last trade stored before `beforeUs`, if any. */
      lastTradeBefore: (symbol: string, beforeUs: number) =>
        read("the last trade before an instant", () => toTrade(lastBeforeStatement.get(symbol, beforeUs))),
      /** Recorded gaps whose range reaches above `aboveId` (every gap of the symbol when null), lowest first. */
      gaps: (symbol: string, aboveId: number | null) =>
        read("trade gaps", () => decodeGaps(gapsStatement.all(symbol, aboveId ?? -1))),
      /** Whether a gap still waiting for repair touches ids fromId..toId. */
      pendingGap: (symbol: string, fromId: number, toId: number) =>
        read("trade gaps", () => pendingGapStatement.get(symbol, toId, fromId)?.["pending"] === 1),
      minuteCoverage,
      /** Runs of closed minutes with no closed 1m kline in [fromMs, toMs) (see `minuteCoverage`). */
      missingMinutes: (symbol: string, fromMs: number, toMs: number) =>
        Effect.map(minuteCoverage(symbol, fromMs, toMs), (c) => c.missing),
      /** Symbols with stored trades. */
      symbols: read("trade symbols", (): ReadonlyArray<string> => symbolsStatement.all())
    } as const
  })
}) {}
