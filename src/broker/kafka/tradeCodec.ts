import { Either, Schema } from "effect"
import { decimalPattern, parseInstantMicros, symbolPattern, type TickerSymbol } from "../../domain/Ticker.js"
import { fromTradeEvent, type Trade, TradeEventJson, type TradeSource, TradeSources, tradeJson } from "../../domain/Trade.js"
import { jsonObject, reasonOf, type TopicCodec } from "./codec.js"

/** The trades contract's version, in every message's headers like the ticks' CONTRACT_VERSION. */
export const TRADE_CONTRACT_VERSION = "1"

const isId = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u) && u >= 0
const isDecimal = (u: unknown): u is string => typeof u === "string" && decimalPattern.test(u)
const sources: ReadonlyArray<unknown> = TradeSources

/**
 * The Trade of a document that is a valid trade (TradeEvent), checked field by field with the schema's
 * own rules and the instant parsed once; undefined for anything else (the schema then says why).
 * Extra fields are ignored, as the schema ignores them.
 */
const fastTrade = (text: string): Trade | undefined => {
  const doc = jsonObject(text)
  if (doc === undefined) return undefined
  const { symbol, agg_trade_id, price, quantity, first_trade_id, last_trade_id, trade_time, is_buyer_maker, source } = doc
  if (typeof symbol !== "string" || !symbolPattern.test(symbol)) return undefined
  if (!isId(agg_trade_id) || !isId(first_trade_id) || !isId(last_trade_id)) return undefined
  if (!isDecimal(price) || !isDecimal(quantity)) return undefined
  if (typeof trade_time !== "string") return undefined
  const timeMicros = parseInstantMicros(trade_time)
  if (timeMicros === undefined) return undefined
  if (typeof is_buyer_maker !== "boolean" || !sources.includes(source)) return undefined
  return {
    symbol: symbol as TickerSymbol,
    id: agg_trade_id,
    price,
    quantity,
    firstTradeId: first_trade_id,
    lastTradeId: last_trade_id,
    timeMicros,
    isBuyerMaker: is_buyer_maker,
    source: source as TradeSource
  }
}

const decodeEvent = Schema.decodeUnknownEither(TradeEventJson)

/**
 * Aggregate trades (`crypto_trades`) keyed by symbol, so one symbol's trades stay in id order on one
 * partition. The value is the contract JSON (`tradeJson`, no Schema); the schema runs only for what
 * the fast check rejects, to say why (the DLQ reason).
 */
export const tradeCodec: TopicCodec<Trade> = {
  key: (trade) => trade.symbol,
  encode: tradeJson,
  headers: { "contract-version": TRADE_CONTRACT_VERSION, "content-type": "application/json" },
  decode: (text) => {
    const trade = fastTrade(text)
    if (trade !== undefined) return Either.right(trade)
    return decodeEvent(text, { errors: "all" }).pipe(Either.map(fromTradeEvent), Either.mapLeft(reasonOf))
  }
}
