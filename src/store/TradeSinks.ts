import { Path } from "@effect/platform"
import { SqlClient, SqlError } from "@effect/sql"
import { Effect, Option } from "effect"
import type { Candle } from "../domain/Candles.js"
import { type Trade, tradeJson } from "../domain/Trade.js"
import { barLabels, Metrics } from "../status/Metrics.js"
import { CandleRepo } from "./CandleRepo.js"
import { makeDayLog } from "./DayLog.js"
import { databaseSinkName } from "./SqliteSink.js"
import { BarSink, SinkError, TradeSink } from "./TickSink.js"
import { TradeIds } from "./TradeIds.js"
import { TradeWriter } from "./TradeWriter.js"

/**
 * The queryable trade history: trades into the store by (symbol, aggregate trade id), and the gaps they
 * reveal recorded in the same transaction (TradeWriter.storeBatch). A failed write is rolled back whole
 * and the consumer retries the batch.
 */
export const makeSqliteTradeSink = Effect.gen(function* () {
  const writer = yield* TradeWriter
  const name = `${yield* databaseSinkName}-trades`
  return TradeSink.of({
    name,
    writeBatch: (trades) =>
      writer.storeBatch(trades).pipe(
        Effect.tap(({ gaps, stored }) =>
          Effect.zipRight(
            Effect.forEach(gaps, (gap) =>
              Effect.logInfo("trade ids missing: a gap to repair").pipe(
                Effect.annotateLogs({ symbol: gap.symbol, from_id: gap.fromId, to_id: gap.toId, missing: gap.toId - gap.fromId + 1 })
              )
            ),
            Effect.logDebug("stored trades in the store").pipe(
              Effect.annotateLogs({ trades: trades.length, added: stored, replayed: trades.length - stored })
            )
          )
        ),
        Effect.asVoid,
        Effect.mapError((cause) => new SinkError({ sink: name, cause }))
      )
  })
})

/**
 * Ranges remembered per trades day file (over all symbols); a symbol's ids are mostly one range, so
 * this is reached only by a day with tens of thousands of holes (it then forgets its lowest ids).
 */
const MAX_RANGES = 50_000
/** Trades day files whose ids are kept in memory (today, yesterday, and a day being repaired). */
const MAX_TRADE_DAYS = 3
// Memory is therefore bounded at MAX_TRADE_DAYS × MAX_RANGES ranges (two numbers each), whatever
// the number of trades; each day file is read back whole, once, when first touched.

/** `{"symbol":"BTCUSDT","agg_trade_id":123,…`: the start of every line tradeJson writes. */
const identityPattern = /^\{"symbol":"([^"]+)","agg_trade_id":(\d+)[,}]/

/** A trades day file's identities (symbol, aggregate trade id). */
const tradeMemory = () => {
  const ids = new TradeIds(MAX_RANGES)
  return {
    add: (trade: Trade) => ids.add(trade.symbol, trade.id),
    remove: (trade: Trade) => ids.remove(trade.symbol, trade.id),
    addLine: (line: string) => {
      // Read back without JSON.parse: a busy day file has millions of lines.
      const m = identityPattern.exec(line)
      if (m !== null) {
        ids.add(m[1]!, Number(m[2]))
        return
      }
      try {
        const parsed = JSON.parse(line) as { symbol?: unknown; agg_trade_id?: unknown }
        if (typeof parsed.symbol === "string" && Number.isSafeInteger(parsed.agg_trade_id)) ids.add(parsed.symbol, parsed.agg_trade_id as number)
      } catch {
        // a damaged line: not an identity we can match
      }
    }
  }
}

/**
 * The raw log of trades: `RAW_DIR/trades/YYYY-MM-DD.jsonl` by the UTC day of the trade time, one
 * contract trade per line (`tradeJson`), appended all or nothing (`DayLog`). Idempotent by (symbol,
 * aggregate trade id): a trade already in its day file is not appended again, after a restart too (the
 * day file is read back once). Repairs append older ids later, so a file is not sorted by id.
 */
export const makeJsonlTradeSink = (rawDir: string) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    return TradeSink.of(
      yield* makeDayLog<Trade>({
        name: "jsonl-trades",
        createDirOnWrite: true,
        dir: path.join(rawDir, "trades"),
        micros: (trade) => trade.timeMicros,
        line: tradeJson,
        memory: tradeMemory,
        maxDays: MAX_TRADE_DAYS
      })
    )
  })

/**
 * Closed 1m klines from the stream, stored as `klines` candles (they win over tick-derived minutes)
 * through CandleRepo, which rebuilds their days' daily candles. Idempotent: a kline stored again
 * changes nothing.
 */
export const makeBarSink = Effect.gen(function* () {
  const candles = yield* CandleRepo
  const sql = yield* SqlClient.SqlClient
  const rollback = sql.onDialectOrElse({ sqlite: () => sql`ROLLBACK`.pipe(Effect.ignore), orElse: () => Effect.void })
  const name = `${yield* databaseSinkName}-bars`
  const metrics = Option.getOrUndefined(yield* Effect.serviceOption(Metrics))
  const storedTally = metrics?.tally("stored", barLabels)
  const observeBatch = metrics?.sqliteBatch("bar")
  /** Every kline written counts as stored: the upsert does not tell a new one from a repeat. */
  const counted = (bars: ReadonlyArray<Candle>, started: number) =>
    Effect.sync(() => {
      observeBatch?.(bars.length, (performance.now() - started) / 1000)
      storedTally?.count(bars)
    })
  return BarSink.of({
    name,
    writeBatch: (bars: ReadonlyArray<Candle>) =>
      Effect.suspend(() => Effect.zipLeft(candles.upsert(bars, "klines"), counted(bars, performance.now()))).pipe(
        // @effect/sql turns a failed COMMIT into a defect; in WAL mode that is where a full disk
        // (SQLITE_FULL) shows. SQLite may or may not have rolled the transaction back (its docs), so
        // roll back explicitly (an error here only means nothing was open) and retry the batch.
        // PostgreSQL has always ended a transaction whose COMMIT failed, and a ROLLBACK would only
        // reach some idle pooled connection: there the batch is just retried.
        Effect.catchAllDefect((defect) =>
          defect instanceof SqlError.SqlError ? Effect.zipRight(rollback, Effect.fail(defect)) : Effect.die(defect)
        ),
        Effect.mapError((cause) => new SinkError({ sink: name, cause }))
      )
  })
})
