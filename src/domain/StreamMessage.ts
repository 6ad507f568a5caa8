import { Either } from "effect"
import { type Candle, fromKlineRow } from "./Candles.js"
import { fromBinanceAggTrade, type Trade, TRADE_WS_SOURCE } from "./Trade.js"

/**
 * One message of a combined Binance stream connection (`/stream?streams=…`), decoded once where it
 * arrives: `{"stream":"btcusdt@aggTrade","data":{…}}`. Every kind but `shutdown` and `invalid` is data
 * (it proves the connection alive); only trades and closed bars are handed on.
 */
export type StreamMessage =
  | { readonly _tag: "trade"; readonly trade: Trade }
  | { readonly _tag: "bar"; readonly bar: Candle }
  /** A kline update of a minute still running, or another stream's event: alive, nothing to store. */
  | { readonly _tag: "progress" }
  /** `serverShutdown`: this server goes away soon; renew the connection. */
  | { readonly _tag: "shutdown" }
  /** Not a message of the documented shape: said once per reason by the caller, never stored. */
  | { readonly _tag: "invalid"; readonly reason: string }

const PROGRESS: StreamMessage = { _tag: "progress" }
const SHUTDOWN: StreamMessage = { _tag: "shutdown" }
const invalid = (reason: string): StreamMessage => ({ _tag: "invalid", reason })

type Json = Readonly<Record<string, unknown>>
const isObject = (x: unknown): x is Json => typeof x === "object" && x !== null && !Array.isArray(x)

/** A `kline` event's `k` as a REST kline row, so both forms are checked by the same `fromKlineRow`. */
const klineRow = (k: Json): ReadonlyArray<unknown> => [k.t, k.o, k.h, k.l, k.c, k.v, k.T, k.q, k.n, k.V, k.Q, k.B ?? "0"]

export const decodeStreamMessage = (text: string): StreamMessage => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return invalid("a message that is not JSON")
  }
  if (!isObject(parsed)) return invalid("a message that is not a JSON object")
  // The combined envelope; a raw event (no envelope) is accepted too.
  const data = isObject(parsed.data) ? parsed.data : parsed
  if (parsed.stream === "!serverShutdown" || data.e === "serverShutdown") return SHUTDOWN
  switch (data.e) {
    case "aggTrade": {
      const trade = fromBinanceAggTrade(typeof data.s === "string" ? data.s : "", data, TRADE_WS_SOURCE)
      return Either.isRight(trade) ? { _tag: "trade", trade: trade.right } : invalid(`an aggTrade event: ${trade.left}`)
    }
    case "kline": {
      const k = data.k
      if (!isObject(k) || typeof k.s !== "string") return invalid("a kline event without its kline")
      if (k.x !== true || k.i !== "1m") return PROGRESS
      // `x` says the bar is closed, whatever this machine's clock says: hence "now" at infinity.
      const bar = fromKlineRow(k.s, "1m", klineRow(k), Number.MAX_SAFE_INTEGER)
      return Either.isRight(bar) ? { _tag: "bar", bar: bar.right } : invalid(`a closed kline: ${bar.left}`)
    }
    default:
      return typeof data.e === "string" ? PROGRESS : invalid("a message without an event type")
  }
}

/** The stream names of `symbols` (lowercase, as Binance requires), in connections of at most `perConnection`. */
export const streamGroups = (symbols: ReadonlyArray<string>, perConnection = 1024): ReadonlyArray<ReadonlyArray<string>> => {
  const names = symbols.flatMap((s) => [`${s.toLowerCase()}@aggTrade`, `${s.toLowerCase()}@kline_1m`])
  const groups: Array<Array<string>> = []
  // A symbol's two streams stay on one connection, so one connection's renewal dedupes a symbol whole.
  const step = perConnection - (perConnection % 2)
  for (let i = 0; i < names.length; i += step) groups.push(names.slice(i, i + step))
  return groups
}
