import { SqlClient, SqlError } from "@effect/sql"
import { Clock, Effect, Option, Schema } from "effect"
import type { Trade } from "../domain/Trade.js"
import { isoInstant } from "../domain/Time.js"
import { Metrics, tradeLabels } from "../status/Metrics.js"
import { writerConnection } from "./RawSqlite.js"

/** A range of aggregate trade ids of one symbol, both ends included. */
export interface TradeGap {
  readonly symbol: string
  readonly fromId: number
  readonly toId: number
}

/** A gap waiting for repair, and when it was found. */
export interface OpenTradeGap extends TradeGap {
  readonly detectedAt: string
}

/** What became of part of a gap: repaired, or unrepairable with the reason. */
export interface GapSettlement {
  readonly fromId: number
  readonly toId: number
  readonly state: "repaired" | "unrepairable"
  readonly reason?: string | undefined
}

/** What storing a batch did: how many trades were new, and the gaps it recorded. */
export interface StoredTrades {
  readonly stored: number
  readonly gaps: ReadonlyArray<TradeGap>
}

export interface GapRow {
  readonly fromId: number
  readonly toId: number
  readonly state: "missing" | "repaired" | "unrepairable"
  readonly reason: string | null
}

/**
 * The rows that replace `gap` once `parts` are settled: the parts, and every sub-range no part covers
 * still missing, in id order. Parts outside the gap or overlapping one another are a programming error.
 */
export const splitGap = (gap: TradeGap, parts: ReadonlyArray<GapSettlement>): ReadonlyArray<GapRow> => {
  const sorted = [...parts].sort((a, b) => a.fromId - b.fromId)
  const rows: Array<GapRow> = []
  let next = gap.fromId
  for (const part of sorted) {
    if (!Number.isSafeInteger(part.fromId) || !Number.isSafeInteger(part.toId) || part.fromId > part.toId) {
      throw new Error(`settling gap ${gap.symbol} ${gap.fromId}..${gap.toId}: part ${part.fromId}..${part.toId} is not a range of ids`)
    }
    if (part.fromId < next || part.toId > gap.toId) {
      throw new Error(
        `settling gap ${gap.symbol} ${gap.fromId}..${gap.toId}: part ${part.fromId}..${part.toId} lies outside it or overlaps another part`
      )
    }
    if (part.fromId > next) rows.push({ fromId: next, toId: part.fromId - 1, state: "missing", reason: null })
    rows.push({ fromId: part.fromId, toId: part.toId, state: part.state, reason: part.state === "unrepairable" ? (part.reason ?? null) : null })
    next = part.toId + 1
  }
  if (next <= gap.toId) rows.push({ fromId: next, toId: gap.toId, state: "missing", reason: null })
  return rows
}

/** A batch's trades per symbol, each list in id order (the order gaps are found in). */
export const bySymbolInIdOrder = (trades: ReadonlyArray<Trade>): Map<string, Array<Trade>> => {
  const bySymbol = new Map<string, Array<Trade>>()
  for (const trade of trades) {
    const list = bySymbol.get(trade.symbol)
    if (list === undefined) bySymbol.set(trade.symbol, [trade])
    else list.push(trade)
  }
  for (const list of bySymbol.values()) list.sort((a, b) => a.id - b.id)
  return bySymbol
}

/**
 * The gaps `sorted` (one symbol's trades in id order) opens above `max`, the newest id stored before
 * it: every jump past the newest id so far + 1. A symbol's history starts at its first trade, so with
 * none stored (`max` null) the batch's first trade opens none; ids below the newest never do.
 */
export const gapsAbove = (symbol: string, max: number | null, sorted: ReadonlyArray<Trade>): Array<TradeGap> => {
  const gaps: Array<TradeGap> = []
  let high = max
  for (const t of sorted) {
    if (high !== null && t.id > high + 1) gaps.push({ symbol, fromId: high + 1, toId: t.id - 1 })
    if (high === null || t.id > high) high = t.id
  }
  return gaps
}

const OpenGapRow = Schema.Struct({ symbol: Schema.String, from_id: Schema.Number, to_id: Schema.Number, detected_at: Schema.String })
const CountRow = Schema.Struct({ n: Schema.Number })

/** The writer's reads, the same SQL on both stores. */
export const writerReads = (sql: SqlClient.SqlClient) => ({
  /** The gaps waiting for repair, found longest ago first. */
  openGaps: sql`
    SELECT symbol, from_id, to_id, detected_at FROM trade_gaps WHERE state = 'missing'
    ORDER BY detected_at, symbol, from_id`.pipe(
    Effect.flatMap(Schema.decodeUnknown(Schema.Array(OpenGapRow))),
    Effect.catchTag("ParseError", Effect.die),
    Effect.map((rows): ReadonlyArray<OpenTradeGap> => rows.map((r) => ({ symbol: r.symbol, fromId: r.from_id, toId: r.to_id, detectedAt: r.detected_at })))
  ),
  /** How many trades of `symbol` are stored with ids in [fromId, toId]. */
  storedIdsIn: (symbol: string, fromId: number, toId: number): Effect.Effect<number, SqlError.SqlError> =>
    sql`SELECT COUNT(*) AS n FROM trades WHERE symbol = ${symbol} AND agg_trade_id BETWEEN ${fromId} AND ${toId}`.pipe(
      Effect.flatMap(Schema.decodeUnknown(Schema.Tuple(CountRow))),
      Effect.catchTag("ParseError", Effect.die),
      Effect.map(([row]) => row.n)
    )
})

/** Logs that a gap was settled elsewhere already (the settle found it no longer missing). */
export const logNotSettled = (gap: TradeGap) => (settled: boolean) =>
  settled
    ? Effect.void
    : Effect.logDebug("the trade gap was no longer missing").pipe(Effect.annotateLogs({ symbol: gap.symbol, from_id: gap.fromId, to_id: gap.toId }))

/**
 * The write side of the trade history (SQLite here; pg/PgTradeWriter on PostgreSQL), like
 * TickWriter: its own better-sqlite3 connection with statements prepared once, each write one
 * synchronous transaction. Storing a batch also records the ranges of ids it shows missing
 * (`trade_gaps`); the repairer reads the open gaps and settles them.
 */
export class TradeWriter extends Effect.Service<TradeWriter>()("store/TradeWriter", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const db = yield* writerConnection("the trade store")
    const metrics = Option.getOrUndefined(yield* Effect.serviceOption(Metrics))
    const storedTally = metrics?.tally("stored", tradeLabels)
    const observeBatch = metrics?.sqliteBatch("trade")

    const maxId = db.prepare("SELECT MAX(agg_trade_id) AS max FROM trades WHERE symbol = ?")
    const insertTrade = db.prepare(
      `INSERT INTO trades (symbol, agg_trade_id, price, quantity, first_trade_id, last_trade_id, trade_time_us, is_buyer_maker, source)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
    )
    // No conflict is expected (a new gap starts past every stored id); should one exist, the older row stands.
    const insertGap = db.prepare(
      `INSERT INTO trade_gaps (symbol, from_id, to_id, state, detected_at) VALUES (?, ?, ?, 'missing', ?) ON CONFLICT DO NOTHING`
    )
    const findMissing = db.prepare(
      "SELECT detected_at FROM trade_gaps WHERE symbol = ? AND from_id = ? AND to_id = ? AND state = 'missing'"
    )
    const deleteGap = db.prepare("DELETE FROM trade_gaps WHERE symbol = ? AND from_id = ?")
    const insertGapRow = db.prepare(
      `INSERT INTO trade_gaps (symbol, from_id, to_id, state, reason, detected_at, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?)`
    )

    const store = db.transaction((trades: ReadonlyArray<Trade>, detectedAt: string): StoredTrades => {
      let stored = 0
      const gaps: Array<TradeGap> = []
      for (const [symbol, list] of bySymbolInIdOrder(trades)) {
        const max = maxId.get(symbol)?.max
        for (const gap of gapsAbove(symbol, max === null || max === undefined ? null : Number(max), list)) {
          if (insertGap.run(symbol, gap.fromId, gap.toId, detectedAt).changes > 0) gaps.push(gap)
        }
        for (const t of list) {
          const { changes } = insertTrade.run(
            symbol,
            t.id,
            t.price,
            t.quantity,
            t.firstTradeId,
            t.lastTradeId,
            t.timeMicros,
            t.isBuyerMaker ? 1 : 0,
            t.source
          )
          if (changes > 0) {
            stored += changes
            storedTally?.add(t)
          }
        }
      }
      return { stored, gaps }
    })

    /** True when the gap was still missing and is now replaced by `rows`. */
    const settle = db.transaction((gap: TradeGap, rows: ReadonlyArray<GapRow>, at: string): boolean => {
      const found = findMissing.get(gap.symbol, gap.fromId, gap.toId)
      if (found === undefined) return false
      const detectedAt = String(found.detected_at)
      deleteGap.run(gap.symbol, gap.fromId)
      for (const row of rows) {
        insertGapRow.run(gap.symbol, row.fromId, row.toId, row.state, row.reason, detectedAt, row.state === "missing" ? null : at)
      }
      return true
    })

    /** Runs one transaction function; a failure (SQLITE_BUSY, SQLITE_FULL at COMMIT, …) has rolled it back. */
    const run = <A>(what: string, f: () => A) =>
      Effect.try({ try: f, catch: (cause) => new SqlError.SqlError({ cause, message: `Failed to ${what}` }) })

    const { openGaps, storedIdsIn } = writerReads(sql)

    return {
      /**
       * Stores the trades (a trade already stored, by symbol and id, is not stored again) and records
       * the gaps they reveal, in one transaction that holds the write lock from its start (BEGIN
       * IMMEDIATE), so the newest stored id it reads is exact even with other writers. Per symbol in id
       * order, an id past the newest stored one + 1 opens a gap up to it; ids below (repairs, backfill,
       * redeliveries) never do. Returns how many trades were new and the gaps recorded.
       */
      storeBatch: (trades: ReadonlyArray<Trade>): Effect.Effect<StoredTrades, SqlError.SqlError> =>
        trades.length === 0
          ? Effect.succeed({ stored: 0, gaps: [] })
          : Effect.flatMap(Clock.currentTimeMillis, (now) =>
              run("store the trades", () => {
                const started = performance.now()
                let result: StoredTrades
                try {
                  result = store.immediate(trades, isoInstant(now))
                } catch (e) {
                  storedTally?.discard() // rolled back: nothing of it is stored
                  throw e
                }
                // counted in the step of the COMMIT, so /metrics never disagrees with the tables
                observeBatch?.(trades.length, (performance.now() - started) / 1000)
                storedTally?.commit()
                for (const gap of result.gaps) metrics?.tradeGaps(gap.symbol, "found", gap.toId - gap.fromId + 1, 1)
                return result
              })
            ),

      /** The gaps waiting for repair, found longest ago first. */
      openGaps,

      /**
       * Replaces the missing gap with what became of its parts (resolved `at`), in one transaction; a
       * sub-range no part covers stays missing. Nothing happens when the gap is no longer missing
       * (another process settled it). Parts outside the gap are a defect.
       */
      settleGap: (gap: TradeGap, parts: ReadonlyArray<GapSettlement>, at: string) =>
        Effect.sync(() => splitGap(gap, parts)).pipe(
          Effect.flatMap((rows) =>
            run("settle a trade gap", () => {
              const settled = settle.immediate(gap, rows, at)
              if (settled && metrics !== undefined) {
                for (const row of rows) if (row.state !== "missing") metrics.tradeGaps(gap.symbol, row.state, row.toId - row.fromId + 1)
              }
              return settled
            })
          ),
          Effect.tap(logNotSettled(gap)),
          Effect.asVoid
        ),

      /** How many trades of `symbol` are stored with ids in [fromId, toId]. */
      storedIdsIn
    } as const
  })
}) {}
