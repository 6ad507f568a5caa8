import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { TickerSymbol } from "../../src/domain/Ticker.js"
import { type Trade, toTradeEvent, TRADE_WS_SOURCE } from "../../src/domain/Trade.js"

/**
 * A trade as a row of the `trades` table, as the trade writer stores it: the contract's fields, the
 * time in microseconds instead of an instant, the flag as 0 or 1.
 */
export const tradeRow = (t: Trade) => {
  const { trade_time: _, is_buyer_maker, source, ...rest } = toTradeEvent(t)
  return { ...rest, trade_time_us: t.timeMicros, is_buyer_maker: is_buyer_maker ? 1 : 0, source }
}

/** Stores `trades` with plain SQL, as the trade writer stores them, 500 to a statement. */
export const insertTrades = (trades: ReadonlyArray<Trade>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.forEach(
      Array.from({ length: Math.ceil(trades.length / 500) }, (_, i) => trades.slice(i * 500, i * 500 + 500)),
      (chunk) => sql`INSERT INTO trades ${sql.insert(chunk.map(tradeRow))}`,
      { discard: true }
    )
  )

/** By symbol, then by id: the order of `ORDER BY symbol, agg_trade_id`. */
export const bySymbolThenId = (a: Trade, b: Trade): number => (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : a.id - b.id)

/** A plain stream trade of one unit at 100: `id` at `timeMicros`, its own first and last trade id. */
export const plainTrade = (symbol: string, id: number, timeMicros: number): Trade => ({
  symbol: symbol as TickerSymbol,
  id,
  price: "100.00000000",
  quantity: "1.00000000",
  firstTradeId: id,
  lastTradeId: id,
  timeMicros,
  isBuyerMaker: false,
  source: TRADE_WS_SOURCE
})
