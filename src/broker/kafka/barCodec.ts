import { Either, Schema } from "effect"
import { Candle, intervalMs } from "../../domain/Candles.js"
import { decimalPattern, symbolPattern } from "../../domain/Ticker.js"
import { reasonOf, type TopicCodec } from "./codec.js"

export const BAR_CONTRACT_VERSION = "1"

/** Candle's fields as a plain struct: the same encoded JSON as `Schema.encode(Candle)`, decoded to plain objects. */
const BarFields = Schema.Struct(Candle.fields)
const encodeBar = Schema.encodeSync(BarFields)
const decodeBar = Schema.decodeUnknownEither(Schema.parseJson(BarFields))

const isAmount = (s: string) => decimalPattern.test(s) && !s.startsWith("-")

/**
 * What Candle's schema leaves open (its prices are any strings, its open time any parseable date) and
 * a bar of this topic must not be: undefined when the candle is a closed kline of a Binance symbol.
 */
const flaw = (c: Candle): string | undefined => {
  if (!symbolPattern.test(c.symbol)) return `symbol: expected a Binance symbol such as BTCUSDT, got ${JSON.stringify(c.symbol)}`
  if (!Number.isSafeInteger(c.openTime) || c.openTime < 0 || c.openTime % intervalMs(c.interval) !== 0) {
    return `open_time: expected an instant aligned to ${c.interval} in UTC`
  }
  for (const field of ["open", "high", "low", "close", "volume", "quoteVolume"] as const) {
    if (!isAmount(c[field])) return `${field}: expected a non-negative decimal string, got ${JSON.stringify(c[field])}`
  }
  if (!Number.isSafeInteger(c.trades) || c.trades < 0) return `trades: expected a whole number, got ${c.trades}`
  if (!c.closed) return "closed: expected a closed kline (the topic carries closed bars only)"
  return undefined
}

/**
 * Closed klines from the stream (`crypto_klines`) keyed by symbol; the value is the Candle's encoded
 * JSON, as /candles answers it. A bar a minute per symbol: the schema decodes each one.
 */
export const barCodec: TopicCodec<Candle> = {
  key: (bar) => bar.symbol,
  encode: (bar) => JSON.stringify(encodeBar(bar)),
  headers: { "contract-version": BAR_CONTRACT_VERSION, "content-type": "application/json" },
  decode: (text) =>
    decodeBar(text, { errors: "all" }).pipe(
      Either.mapLeft(reasonOf),
      Either.flatMap((bar) => {
        const why = flaw(bar)
        return why === undefined ? Either.right(bar) : Either.left(why)
      })
    )
}
