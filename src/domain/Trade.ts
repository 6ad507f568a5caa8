import { Either, Schema } from "effect"
import { DecimalString, decimalPattern, formatInstantMicros, IsoInstant, parseInstantMicros, symbolPattern, TickerSymbol } from "./Ticker.js"

/**
 * The trades contract: one Binance aggregate trade (one taker order filled at one price, possibly
 * against several makers). Identity is (symbol, agg_trade_id); ids are consecutive per symbol, so a
 * missing range is exact.
 */
export const TRADE_WS_SOURCE = "binance_ws_aggTrade"
export const TRADE_REST_SOURCE = "binance_api_v3_aggTrades"
export const TRADE_SIM_SOURCE = "simulated"
export const TradeSources = [TRADE_WS_SOURCE, TRADE_REST_SOURCE, TRADE_SIM_SOURCE] as const
export type TradeSource = (typeof TradeSources)[number]

/** A trade or aggregate-trade id: a JSON integer (they exceed 2^31, and stay below 2^53). */
const TradeId = Schema.Int.pipe(Schema.nonNegative(), Schema.lessThanOrEqualTo(Number.MAX_SAFE_INTEGER))

/** The JSON document of one trade, fields in contract order (what the API, Kafka and the raw log carry). */
export const TradeEvent = Schema.Struct({
  symbol: TickerSymbol,
  agg_trade_id: TradeId,
  price: DecimalString,
  quantity: DecimalString,
  first_trade_id: TradeId,
  last_trade_id: TradeId,
  trade_time: IsoInstant,
  is_buyer_maker: Schema.Boolean,
  source: Schema.Literal(...TradeSources)
}).annotations({ identifier: "AggTrade" })
export type TradeEvent = typeof TradeEvent.Type

export const TradeEventJson = Schema.parseJson(TradeEvent)

/**
 * A trade as every part after the boundary carries it: decoded once, with its time in microseconds
 * since the epoch. Price and quantity stay Binance's decimal strings, unchanged.
 */
export interface Trade {
  readonly symbol: TickerSymbol
  readonly id: number
  readonly price: string
  readonly quantity: string
  readonly firstTradeId: number
  readonly lastTradeId: number
  readonly timeMicros: number
  readonly isBuyerMaker: boolean
  readonly source: TradeSource
}

export const toTradeEvent = (t: Trade): TradeEvent => ({
  symbol: t.symbol,
  agg_trade_id: t.id,
  price: t.price,
  quantity: t.quantity,
  first_trade_id: t.firstTradeId,
  last_trade_id: t.lastTradeId,
  trade_time: formatInstantMicros(t.timeMicros),
  is_buyer_maker: t.isBuyerMaker,
  source: t.source
})

export const fromTradeEvent = (e: TradeEvent): Trade => ({
  symbol: e.symbol,
  id: e.agg_trade_id,
  price: e.price,
  quantity: e.quantity,
  firstTradeId: e.first_trade_id,
  lastTradeId: e.last_trade_id,
  timeMicros: parseInstantMicros(e.trade_time)!,
  isBuyerMaker: e.is_buyer_maker,
  source: e.source
})

/**
 * The trade as one JSON document in contract order, without Schema or `JSON.stringify`: every field is
 * pattern-checked (symbol, decimals, integers, an instant, a fixed source), so none needs escaping.
 */
export const tradeJson = (t: Trade): string =>
  `{"symbol":"${t.symbol}","agg_trade_id":${t.id},"price":"${t.price}","quantity":"${t.quantity}",` +
  `"first_trade_id":${t.firstTradeId},"last_trade_id":${t.lastTradeId},"trade_time":"${formatInstantMicros(t.timeMicros)}",` +
  `"is_buyer_maker":${t.isBuyerMaker},"source":"${t.source}"}`

const isId = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0
const isDecimal = (x: unknown): x is string => typeof x === "string" && decimalPattern.test(x)

/**
 * Binance's aggregate-trade fields (`a p q f l T m`, the same on the WebSocket `aggTrade` event and in a
 * `GET /api/v3/aggTrades` row) as a Trade, or the reason they are not one.
 */
export const fromBinanceAggTrade = (
  symbol: string,
  raw: Readonly<Record<string, unknown>>,
  source: TradeSource
): Either.Either<Trade, string> => {
  if (!symbolPattern.test(symbol)) return Either.left(`expected a Binance symbol, got ${JSON.stringify(symbol)}`)
  const { a, f, l, m, p, q, T } = raw
  if (!isId(a)) return Either.left(`aggregate trade id "a": expected a whole number, got ${JSON.stringify(a)}`)
  if (!isDecimal(p)) return Either.left(`price "p": expected a decimal string, got ${JSON.stringify(p)}`)
  if (!isDecimal(q)) return Either.left(`quantity "q": expected a decimal string, got ${JSON.stringify(q)}`)
  if (!isId(f) || !isId(l) || l < f) return Either.left(`trade ids "f"/"l": expected whole numbers f <= l, got ${JSON.stringify([f, l])}`)
  if (!isId(T)) return Either.left(`trade time "T": expected epoch milliseconds, got ${JSON.stringify(T)}`)
  if (typeof m !== "boolean") return Either.left(`"m": expected a boolean, got ${JSON.stringify(m)}`)
  return Either.right({
    symbol: symbol as TickerSymbol,
    id: a,
    price: p,
    quantity: q,
    firstTradeId: f,
    lastTradeId: l,
    timeMicros: T * 1000,
    isBuyerMaker: m,
    source
  })
}
