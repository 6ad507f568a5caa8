import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { ParseResult, Schema } from "effect"
import { TickerSymbol } from "../../domain/Ticker.js"
import { UnknownSymbol } from "../Params.js"
import { ApiKeyAuth } from "../security/keys.js"
import { Kinds } from "./ReplayBuffer.js"

// GET /stream: server-sent events (the live feed). Declared in an HttpApi group like the other
// endpoints, so it has their key check, CORS, limits and a place in /openapi.json.

const kindsMessage = () => `kinds must be a comma-separated subset of ${Kinds.join(",")}`

/** An event id in a query string: plain decimal digits, a safe integer. */
const EventId = Schema.transformOrFail(Schema.String, Schema.Number, {
  strict: true,
  decode: (text, _, ast) => {
    const n = /^[0-9]{1,16}$/.test(text) ? Number(text) : NaN
    return Number.isSafeInteger(n)
      ? ParseResult.succeed(n)
      : ParseResult.fail(new ParseResult.Type(ast, text, "last_event_id must be the id of an event this server sent (digits)"))
  },
  encode: (n) => ParseResult.succeed(String(n))
})

/** A Last-Event-ID header that is not one of our ids (only a browser's echo of one is expected) is ignored. */
export const parseEventIdHeader = (text: string | undefined): number | undefined => {
  const n = text !== undefined && /^[0-9]{1,16}$/.test(text.trim()) ? Number(text.trim()) : NaN
  return Number.isSafeInteger(n) ? n : undefined
}

export const StreamParams = Schema.Struct({
  symbols: Schema.optional(Schema.compose(Schema.split(","), Schema.NonEmptyArray(Schema.compose(Schema.Trim, TickerSymbol)))),
  kinds: Schema.optional(
    Schema.compose(
      Schema.split(","),
      Schema.NonEmptyArray(Schema.compose(Schema.Trim, Schema.Literal(...Kinds).annotations({ message: () => ({ message: kindsMessage(), override: true }) })))
    )
  ),
  /** For clients that cannot set the Last-Event-ID header; the header wins when both are sent. */
  last_event_id: Schema.optional(EventId)
})

export const StreamHeaders = Schema.Struct({ "last-event-id": Schema.optional(Schema.String) })

export class LiveApi extends HttpApiGroup.make("live")
  .middleware(ApiKeyAuth)
  .add(
    HttpApiEndpoint.get("stream", "/stream")
      .setUrlParams(StreamParams)
      .setHeaders(StreamHeaders)
      .addSuccess(HttpApiSchema.Text({ contentType: "text/event-stream" }))
      .addError(UnknownSymbol)
      .annotate(
        OpenApi.Summary,
        "Server-sent events: new ticker events, aggregate trades and closed 1m candles as they are stored " +
          "(`event:` ticker | trade | candle, `data:` the contract JSON of /trades/latest, /agg-trades/latest and /candles items); " +
          "`symbols` (default every symbol) and `kinds` (default all) filter; Last-Event-ID (or last_event_id) resumes " +
          "without a gap within the last 5 minutes; a `: heartbeat` comment every 15 s"
      )
  ) {}
