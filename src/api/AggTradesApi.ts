import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { ParseResult, Schema } from "effect"
import { BI_MAX_DAYS } from "../domain/ReadModels.js"
import { TickerSymbol } from "../domain/Ticker.js"
import { TradeEvent } from "../domain/Trade.js"
import { ConditionalHeaders, Csv, DateParam, InstantParam, UnknownSymbol, wholeParam } from "./Params.js"
import { ApiKeyAuth } from "./security/keys.js"

// The aggregate trades endpoints: /agg-trades/*, /coverage and the /bi/trades.csv contract.

export const AGG_LATEST_MAX_ROWS = 1000
export const AGG_LATEST_DEFAULT_ROWS = 200
export const AGG_RANGE_MAX_ROWS = 5000
export const AGG_RANGE_DEFAULT_ROWS = 1000
export const COVERAGE_DEFAULT_DAYS = 1

const Key = Schema.Struct({ timeMicros: Schema.Number, id: Schema.Number })

/**
 * Where the previous page of /agg-trades/range ended: opaque to clients, `a` + the last trade's time
 * (µs) and id in base 36. Keyed on the id, so trades sharing a microsecond are never split wrongly.
 */
export const AggTradeCursor = Schema.transformOrFail(Schema.String, Key, {
  strict: true,
  decode: (text, _, ast) => {
    const m = /^a([0-9a-z]{1,11})-([0-9a-z]{1,11})$/.exec(text)
    const timeMicros = m === null ? NaN : parseInt(m[1]!, 36)
    const id = m === null ? NaN : parseInt(m[2]!, 36)
    return Number.isSafeInteger(timeMicros) && Number.isSafeInteger(id)
      ? ParseResult.succeed({ timeMicros, id })
      : ParseResult.fail(new ParseResult.Type(ast, text, "cursor must be the x-next-cursor value of a previous answer"))
  },
  encode: ({ id, timeMicros }) => ParseResult.succeed(`a${timeMicros.toString(36)}-${id.toString(36)}`)
})
export const encodeAggTradeCursor = Schema.encodeSync(AggTradeCursor)

export const AggLatestParams = Schema.Struct({
  symbol: TickerSymbol,
  limit: wholeParam("limit", AGG_LATEST_MAX_ROWS, AGG_LATEST_DEFAULT_ROWS)
})

export const AggRangeParams = Schema.Struct({
  symbol: TickerSymbol,
  start: InstantParam,
  end: InstantParam,
  limit: wholeParam("limit", AGG_RANGE_MAX_ROWS, AGG_RANGE_DEFAULT_ROWS),
  cursor: Schema.optional(AggTradeCursor)
}).pipe(Schema.filter((p) => p.start < p.end || "start must be before end"))

export class AggTradesApi extends HttpApiGroup.make("aggTrades")
  .middleware(ApiKeyAuth)
  .add(
    HttpApiEndpoint.get("latest", "/agg-trades/latest")
      .setUrlParams(AggLatestParams)
      .addSuccess(Schema.Array(TradeEvent))
      .addError(UnknownSymbol)
      .annotate(
        OpenApi.Summary,
        `Newest aggregate trades first (highest agg_trade_id first); limit 1..${AGG_LATEST_MAX_ROWS}, default ${AGG_LATEST_DEFAULT_ROWS}`
      )
  )
  .add(
    HttpApiEndpoint.get("range", "/agg-trades/range")
      .setUrlParams(AggRangeParams)
      .addSuccess(Schema.Array(TradeEvent))
      .addError(UnknownSymbol)
      .annotate(
        OpenApi.Summary,
        `Aggregate trades with start <= trade_time < end in agg_trade_id order, at most ${AGG_RANGE_MAX_ROWS} per answer ` +
          `(default ${AGG_RANGE_DEFAULT_ROWS}); when more remain, the x-next-cursor header (and Link rel="next") gives the cursor for the next page`
      )
  ) {}

/** A symbol with no stored trade has no coverage yet: it starts with the first stored trade. */
export class NoTrades extends Schema.TaggedError<NoTrades>()(
  "NoTrades",
  { message: Schema.String, symbol: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

const Id = Schema.Int
export const Coverage = Schema.Struct({
  symbol: Schema.String,
  from: Schema.String,
  to: Schema.String,
  trades: Schema.Struct({
    first_id: Schema.NullOr(Id),
    last_id: Schema.NullOr(Id),
    stored: Schema.Int,
    missing: Schema.Array(Schema.Struct({ from_id: Id, to_id: Id })),
    repaired: Schema.Array(Schema.Struct({ from_id: Id, to_id: Id, at: Schema.String })),
    unrepairable: Schema.Array(Schema.Struct({ from_id: Id, to_id: Id, reason: Schema.String }))
  }),
  minutes: Schema.Struct({
    covered: Schema.Int,
    missing: Schema.Array(Schema.Struct({ from: Schema.String, to: Schema.String }))
  })
}).annotations({ identifier: "Coverage" })
export type Coverage = typeof Coverage.Type

export const CoverageParams = Schema.Struct({
  symbol: TickerSymbol,
  days: wholeParam("days", BI_MAX_DAYS, COVERAGE_DEFAULT_DAYS)
})

export class CoverageApi extends HttpApiGroup.make("coverage")
  .middleware(ApiKeyAuth)
  .add(
    HttpApiEndpoint.get("coverage", "/coverage")
      .setUrlParams(CoverageParams)
      .addSuccess(Coverage)
      .addError(UnknownSymbol)
      .addError(NoTrades)
      .annotate(
        OpenApi.Summary,
        "How complete the stored history is over the last `days` UTC days (default 1, today), counted from the symbol's first " +
          "stored trade: trade ids stored, missing, repaired and unrepairable, and the minutes without a closed 1m kline"
      )
  ) {}

export const TradesCsvParams = Schema.Struct({ symbol: TickerSymbol, date: DateParam })

/** GET /bi/trades.csv, declared in the `bi` group (Api.ts) so it carries the same keys and limits. */
export const tradesCsvEndpoint = HttpApiEndpoint.get("trades", "/bi/trades.csv")
  .setUrlParams(TradesCsvParams)
  .setHeaders(ConditionalHeaders)
  .addSuccess(Csv)
  .addError(UnknownSymbol)
  .annotate(
    OpenApi.Summary,
    "agg_trade_id,trade_time,symbol,price,quantity,first_trade_id,last_trade_id,is_buyer_maker: every stored aggregate trade of one UTC day, by id, streamed"
  )
