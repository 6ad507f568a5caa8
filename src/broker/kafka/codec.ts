import { Either, ParseResult, Schema } from "effect"
import { eventJson } from "../../domain/EventJson.js"
import {
  CONTRACT_VERSION,
  decimalPattern,
  parseInstantMicros,
  symbolPattern,
  type Tick,
  type TickerEvent,
  TickerEventJson,
  type TickerSymbol,
  toTick
} from "../../domain/Ticker.js"

/**
 * How the values of one topic travel: the message key, value and headers of a value, and the value of
 * a message (decoded exactly once, where it enters the consumer), or one line saying why it is not one.
 */
export interface TopicCodec<A> {
  readonly key: (value: A) => string
  readonly encode: (value: A) => string
  readonly headers: Readonly<Record<string, string>>
  readonly decode: (text: string) => Either.Either<A, string>
}

const isDecimal = (u: unknown): u is string => typeof u === "string" && decimalPattern.test(u)
const isInstant = (u: unknown): u is string => typeof u === "string" && parseInstantMicros(u) !== undefined

/**
 * The Tick of a document that is a valid contract event, checked field by field with the schema's own
 * patterns and the instant parsed once; undefined for anything else (the schema then says why).
 */
/** The JSON object a message holds, or undefined when it holds anything else. */
export const jsonObject = (text: string): Readonly<Record<string, unknown>> | undefined => {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    return undefined
  }
  return typeof doc === "object" && doc !== null && !Array.isArray(doc) ? (doc as Record<string, unknown>) : undefined
}

const fastTick = (text: string): Tick | undefined => {
  const doc = jsonObject(text)
  if (doc === undefined) return undefined
  const { timestamp_utc, symbol, lastPrice, priceChangePercent, volume, source, event_time } = doc
  if (typeof timestamp_utc !== "string") return undefined
  const tsMicros = parseInstantMicros(timestamp_utc)
  if (tsMicros === undefined) return undefined
  if (typeof symbol !== "string" || !symbolPattern.test(symbol)) return undefined
  if (!isDecimal(lastPrice) || !isDecimal(priceChangePercent) || !isDecimal(volume)) return undefined
  if (typeof source !== "string" || source.length === 0 || source.trim() !== source) return undefined
  if (event_time !== undefined && !isInstant(event_time)) return undefined
  const fields = { timestamp_utc, symbol: symbol as TickerSymbol, lastPrice, priceChangePercent, volume, source }
  const event: TickerEvent = event_time === undefined ? fields : { ...fields, event_time }
  return { event, symbol: event.symbol, tsMicros, price: Number(lastPrice) }
}

const decodeEvent = Schema.decodeUnknownEither(TickerEventJson)

/** Why a document is not a value of its topic (the schema's issues), in one line for the DLQ header. */
export const reasonOf = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error)
    .map((issue) => (issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message))
    .join("; ")
    .replace(/\s+/g, " ")
    .slice(0, 500)

/** Contract events keyed by symbol. The schema runs only for what the fast check rejects, to say why. */
export const tickCodec: TopicCodec<Tick> = {
  key: (tick) => tick.symbol,
  encode: (tick) => eventJson(tick.event),
  headers: { "contract-version": CONTRACT_VERSION, "content-type": "application/json" },
  decode: (text) => {
    const tick = fastTick(text)
    if (tick !== undefined) return Either.right(tick)
    return decodeEvent(text, { errors: "all" }).pipe(Either.map(toTick), Either.mapLeft(reasonOf))
  }
}
