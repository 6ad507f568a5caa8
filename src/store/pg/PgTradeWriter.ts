import { SqlClient, SqlError } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Clock, Effect, Layer, Option } from "effect"
import type { Trade } from "../../domain/Trade.js"
import { isoInstant } from "../../domain/Time.js"
import { Metrics, tradeLabels } from "../../status/Metrics.js"
import { defectAsFailure } from "./PgSql.js"
import {
  bySymbolInIdOrder,
  type GapRow,
  type GapSettlement,
  gapsAbove,
  logNotSettled,
  splitGap,
  type StoredTrades,
  type TradeGap,
  TradeWriter,
  writerReads
} from "../TradeWriter.js"

/** Trades one INSERT carries: its nine parameters are arrays, so the statement's size does not grow with it. */
const INSERT_CHUNK = 5_000

/**
 * The PostgreSQL adapter of TradeWriter, on the store's pool. A batch is one transaction: per symbol
 * (in sorted order, so two writers never deadlock) a transaction-scoped advisory lock, then the newest
 * stored ids, the gaps, and one multi-row insert per chunk of trades (`unnest` of column arrays,
 * `ON CONFLICT DO NOTHING`). The lock serialises the writers of a symbol across processes (consumers
 * during a Kafka rebalance): without it two batches could both read the same newest id and each record
 * a gap the other fills. The newest ids are read by a statement after the lock's: under READ COMMITTED
 * each statement sees what was committed when it began, so one started before the lock was granted
 * would miss the previous holder's trades.
 */
export const PgTradeWriterLive: Layer.Layer<TradeWriter, never, SqlClient.SqlClient | PgClient.PgClient> = Layer.effect(
  TradeWriter,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const metrics = Option.getOrUndefined(yield* Effect.serviceOption(Metrics))
    const storedTally = metrics?.tally("stored", tradeLabels)
    const observeBatch = metrics?.sqliteBatch("trade")
    const { openGaps, storedIdsIn } = writerReads(sql)

    const lock = (symbols: ReadonlyArray<string>) =>
      sql`SELECT pg_advisory_xact_lock(hashtext('trades:' || s)) FROM unnest(${symbols}::text[]) WITH ORDINALITY AS u(s, n) ORDER BY n`
    const newest = (symbols: ReadonlyArray<string>) =>
      sql`SELECT s, (SELECT max(agg_trade_id) FROM trades WHERE symbol = s) FROM unnest(${symbols}::text[]) AS u(s)`.values
    const insertGaps = (gaps: ReadonlyArray<TradeGap>, detectedAt: string) =>
      sql`INSERT INTO trade_gaps (symbol, from_id, to_id, state, detected_at)
        SELECT s, f, t, 'missing', ${detectedAt} FROM unnest(${gaps.map((g) => g.symbol)}::text[],
          ${gaps.map((g) => g.fromId)}::bigint[], ${gaps.map((g) => g.toId)}::bigint[]) AS g(s, f, t)
        ON CONFLICT DO NOTHING RETURNING symbol, from_id`.values
    const insertTrades = (chunk: ReadonlyArray<Trade>) =>
      sql`INSERT INTO trades (symbol, agg_trade_id, price, quantity, first_trade_id, last_trade_id, trade_time_us, is_buyer_maker, source)
        SELECT * FROM unnest(${chunk.map((t) => t.symbol)}::text[], ${chunk.map((t) => t.id)}::bigint[],
          ${chunk.map((t) => t.price)}::text[], ${chunk.map((t) => t.quantity)}::text[],
          ${chunk.map((t) => t.firstTradeId)}::bigint[], ${chunk.map((t) => t.lastTradeId)}::bigint[],
          ${chunk.map((t) => t.timeMicros)}::bigint[], ${chunk.map((t) => (t.isBuyerMaker ? 1 : 0))}::smallint[],
          ${chunk.map((t) => t.source)}::text[])
        ON CONFLICT DO NOTHING RETURNING symbol, agg_trade_id`.values

    /** Stores one batch; returns the (symbol, id) of each trade that was new, and the gaps recorded. */
    const store = (bySymbol: Map<string, Array<Trade>>, detectedAt: string) =>
      Effect.gen(function* () {
        const symbols = [...bySymbol.keys()].sort()
        yield* lock(symbols)
        const max = new Map((yield* newest(symbols)).map((r) => [r[0] as string, r[1] as number | null]))
        const planned: Array<TradeGap> = []
        const unique: Array<Trade> = [] // a repeat inside the batch is sent once
        for (const [symbol, list] of bySymbol) {
          planned.push(...gapsAbove(symbol, max.get(symbol) ?? null, list))
          for (let i = 0; i < list.length; i++) if (i === 0 || list[i]!.id !== list[i - 1]!.id) unique.push(list[i]!)
        }
        const recorded = planned.length === 0 ? [] : yield* insertGaps(planned, detectedAt)
        const isNew = new Set(recorded.map((r) => `${r[0]}:${r[1]}`))
        const stored: Array<ReadonlyArray<unknown>> = []
        for (let i = 0; i < unique.length; i += INSERT_CHUNK) stored.push(...(yield* insertTrades(unique.slice(i, i + INSERT_CHUNK))))
        return { stored, gaps: planned.filter((g) => isNew.has(`${g.symbol}:${g.fromId}`)) }
      })

    /** Counts the committed batch: its new trades by their labels, its size and time, its gaps. */
    const count = (bySymbol: Map<string, Array<Trade>>, stored: ReadonlyArray<ReadonlyArray<unknown>>, gaps: ReadonlyArray<TradeGap>, size: number, started: number) => {
      if (storedTally !== undefined) {
        const byId = new Map<string, Map<number, Trade>>()
        for (const [symbol, list] of bySymbol) byId.set(symbol, new Map(list.map((t) => [t.id, t])))
        for (const [symbol, id] of stored) storedTally.add(byId.get(symbol as string)!.get(id as number)!)
        storedTally.commit()
      }
      observeBatch?.(size, (performance.now() - started) / 1000)
      for (const gap of gaps) metrics?.tradeGaps(gap.symbol, "found", gap.toId - gap.fromId + 1, 1)
    }

    /** True when the gap was still missing and is now replaced by `rows`; the row lock makes a concurrent settle wait, then find nothing. */
    const settle = (gap: TradeGap, rows: ReadonlyArray<GapRow>, at: string) =>
      Effect.gen(function* () {
        const found = yield* sql`SELECT detected_at FROM trade_gaps
          WHERE symbol = ${gap.symbol} AND from_id = ${gap.fromId} AND to_id = ${gap.toId} AND state = 'missing' FOR UPDATE`.values
        if (found.length === 0) return false
        const detectedAt = found[0]![0] as string
        yield* sql`DELETE FROM trade_gaps WHERE symbol = ${gap.symbol} AND from_id = ${gap.fromId}`
        yield* sql`INSERT INTO trade_gaps ${sql.insert(
          rows.map((row) => ({
            symbol: gap.symbol,
            from_id: row.fromId,
            to_id: row.toId,
            state: row.state,
            reason: row.reason,
            detected_at: detectedAt,
            resolved_at: row.state === "missing" ? null : at
          }))
        )}`
        return true
      }).pipe(sql.withTransaction, defectAsFailure)

    return TradeWriter.make({
      storeBatch: (trades: ReadonlyArray<Trade>): Effect.Effect<StoredTrades, SqlError.SqlError> =>
        trades.length === 0
          ? Effect.succeed({ stored: 0, gaps: [] })
          : Effect.gen(function* () {
              const detectedAt = isoInstant(yield* Clock.currentTimeMillis)
              const bySymbol = bySymbolInIdOrder(trades)
              const started = performance.now()
              const { gaps, stored } = yield* store(bySymbol, detectedAt).pipe(sql.withTransaction, defectAsFailure)
              // counted in the step that sees the COMMIT, so /metrics never counts a rolled-back batch
              count(bySymbol, stored, gaps, trades.length, started)
              return { stored: stored.length, gaps }
            }),
      openGaps,
      settleGap: (gap: TradeGap, parts: ReadonlyArray<GapSettlement>, at: string) =>
        Effect.sync(() => splitGap(gap, parts)).pipe(
          Effect.flatMap((rows) =>
            Effect.tap(settle(gap, rows, at), (settled) => {
              if (settled && metrics !== undefined) {
                for (const row of rows) if (row.state !== "missing") metrics.tradeGaps(gap.symbol, row.state, row.toId - row.fromId + 1)
              }
            })
          ),
          Effect.tap(logNotSettled(gap)),
          Effect.asVoid
        ),
      storedIdsIn
    })
  })
)
