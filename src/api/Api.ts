import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { ParseResult, Schema } from "effect"
import { Candle, Interval } from "../domain/Candles.js"
import { BI_DEFAULT_DAYS, BI_MAX_DAYS, SymbolSummary } from "../domain/ReadModels.js"
import { TickerEvent, TickerSymbol } from "../domain/Ticker.js"
import { AggTradesApi, CoverageApi, tradesCsvEndpoint } from "./AggTradesApi.js"
import { SystemApi } from "./HealthApi.js"
import { LiveApi } from "./live/StreamApi.js"
import { ConditionalHeaders, Csv, InstantParam, UnknownSymbol, wholeParam } from "./Params.js"
import { ApiKeyAuth } from "./security/keys.js"

/** Most rows one /trades/range answer carries. */
export const RANGE_MAX_ROWS = 5000
export const LATEST_MAX_ROWS = 1000
export const LATEST_DEFAULT_ROWS = 200

export { ConditionalHeaders, UnknownSymbol } from "./Params.js"

const rowLimit = (max: number, fallback: number) => wholeParam("limit", max, fallback)

export const LatestParams = Schema.Struct({
  symbol: TickerSymbol,
  limit: rowLimit(LATEST_MAX_ROWS, LATEST_DEFAULT_ROWS)
})

/** Where the previous page of /trades/range ended: opaque to clients, `c` + the last row's microseconds in base 36. */
export const RangeCursor = Schema.transformOrFail(Schema.String, Schema.Number, {
  strict: true,
  decode: (text, _, ast) => {
    const micros = /^c[0-9a-z]{1,12}$/.test(text) ? parseInt(text.slice(1), 36) : NaN
    return Number.isSafeInteger(micros)
      ? ParseResult.succeed(micros)
      : ParseResult.fail(new ParseResult.Type(ast, text, "cursor must be the x-next-cursor value of a previous answer"))
  },
  encode: (micros) => ParseResult.succeed(`c${micros.toString(36)}`)
})
export const encodeCursor = Schema.encodeSync(RangeCursor)

export const RangeParams = Schema.Struct({
  symbol: TickerSymbol,
  start: InstantParam,
  end: InstantParam,
  limit: rowLimit(RANGE_MAX_ROWS, RANGE_MAX_ROWS),
  cursor: Schema.optional(RangeCursor)
}).pipe(Schema.filter((p) => p.start < p.end || "start must be before end"))

export class TradesApi extends HttpApiGroup.make("trades")
  .middleware(ApiKeyAuth)
  .add(
    HttpApiEndpoint.get("symbols", "/symbols")
      .addSuccess(Schema.Array(SymbolSummary))
      .annotate(OpenApi.Summary, "Symbols that have data, with their latest timestamp")
  )
  .add(
    HttpApiEndpoint.get("latest", "/trades/latest")
      .setUrlParams(LatestParams)
      .addSuccess(Schema.Array(TickerEvent))
      .addError(UnknownSymbol)
      .annotate(OpenApi.Summary, `Newest events first; limit 1..${LATEST_MAX_ROWS}, default ${LATEST_DEFAULT_ROWS}`)
  )
  .add(
    HttpApiEndpoint.get("range", "/trades/range")
      .setUrlParams(RangeParams)
      .addSuccess(Schema.Array(TickerEvent))
      .addError(UnknownSymbol)
      .annotate(
        OpenApi.Summary,
        `Events with start <= timestamp_utc < end, oldest first, at most ${RANGE_MAX_ROWS} per answer; when more remain, the x-next-cursor header (and Link rel="next") gives the cursor for the next page`
      )
  ) {}

const days = wholeParam("days", BI_MAX_DAYS, BI_DEFAULT_DAYS)
export const BiParams = Schema.Struct({ symbol: TickerSymbol, days })
export const LatestPricesParams = Schema.Struct({
  symbols: Schema.optional(
    Schema.compose(Schema.split(","), Schema.NonEmptyArray(Schema.compose(Schema.Trim, TickerSymbol)))
  )
})

const csvEndpoint = <const Name extends string, const Path extends `/${string}`>(name: Name, path: Path, summary: string) =>
  HttpApiEndpoint.get(name, path)
    .setUrlParams(BiParams)
    .setHeaders(ConditionalHeaders)
    .addSuccess(Csv)
    .addError(UnknownSymbol)
    .annotate(OpenApi.Summary, summary)

export class BiApi extends HttpApiGroup.make("bi")
  .middleware(ApiKeyAuth)
  .add(csvEndpoint("dailyOhlc", "/bi/daily_ohlc.csv", "date,symbol,open,high,low,close,volume for the last `days` UTC days"))
  .add(csvEndpoint("dailyVolume", "/bi/daily_volume.csv", "date,symbol,volume,quote_volume for the last `days` UTC days"))
  .add(
    csvEndpoint(
      "dailyFeatures",
      "/bi/daily_features.csv",
      "date,symbol,close,log_return,volatility_7d,volatility_30d (annualised) for the last `days` UTC days"
    )
  )
  .add(
    HttpApiEndpoint.get("latestPrices", "/bi/latest_prices.csv")
      .setUrlParams(LatestPricesParams)
      .setHeaders(ConditionalHeaders)
      .addSuccess(Csv)
      .addError(UnknownSymbol)
      .annotate(OpenApi.Summary, "symbol,last_price,price_change_percent,volume,timestamp_utc, newest event per symbol")
  )
  .add(tradesCsvEndpoint) {}

/** Most candles one /candles answer carries. */
export const CANDLES_MAX = 5000

export class BadRange extends Schema.TaggedError<BadRange>()(
  "BadRange",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

export const FeatureJson = Schema.Struct({
  date: Schema.String,
  symbol: Schema.String,
  close: Schema.String,
  log_return: Schema.NullOr(Schema.Number),
  volatility_7d: Schema.NullOr(Schema.Number),
  volatility_30d: Schema.NullOr(Schema.Number)
})

export const CandleParams = Schema.Struct({
  symbol: TickerSymbol,
  interval: Interval,
  start: InstantParam,
  end: InstantParam
}).pipe(Schema.filter((p) => p.start < p.end || "start must be before end"))

export class MarketApi extends HttpApiGroup.make("market")
  .middleware(ApiKeyAuth)
  .add(
    HttpApiEndpoint.get("candles", "/candles")
      .setUrlParams(CandleParams)
      .addSuccess(Schema.Array(Candle))
      .addError(UnknownSymbol)
      .addError(BadRange)
      .annotate(
        OpenApi.Summary,
        `OHLCV candles (1m, 5m, 1h, 1d) with start <= open_time < end, oldest first, at most ${CANDLES_MAX}; Binance klines win over tick-derived candles, which carry prices only (volume 0)`
      )
  )
  .add(
    HttpApiEndpoint.get("features", "/features/daily")
      .setUrlParams(BiParams)
      .addSuccess(Schema.Array(FeatureJson))
      .addError(UnknownSymbol)
      .annotate(OpenApi.Summary, "Daily close, log return and annualised 7/30-day realized volatility for the last `days` UTC days")
  ) {}

export class Api extends HttpApi.make("crypto-streaming-platform")
  .add(SystemApi)
  .add(TradesApi)
  .add(MarketApi)
  .add(BiApi)
  .add(AggTradesApi)
  .add(CoverageApi)
  .add(LiveApi)
  .annotate(OpenApi.Title, "crypto-streaming-platform")
  .annotate(OpenApi.Version, "0.1.0")
  .annotate(
    OpenApi.Description,
    "Binance market data as it happens: history, candles, features and stable CSV contracts for BI tools. " +
      "The x-api-key header (apiKey) is needed only when the server sets API_KEYS; /health never needs it."
  ) {}
