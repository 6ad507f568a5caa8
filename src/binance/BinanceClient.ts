import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Clock, Duration, Effect, Either, Option, ParseResult, Ref, Schema } from "effect"
import * as AppConfig from "../Config.js"
import { DecimalString, type TickerSymbol } from "../domain/Ticker.js"
import { isoInstant, MINUTE_MS } from "../domain/Time.js"
import { fromBinanceAggTrade, type Trade, TRADE_REST_SOURCE } from "../domain/Trade.js"
import { gauges, Metrics } from "../status/Metrics.js"
import {
  type BinanceError,
  BinanceRejected,
  BinanceUnavailable,
  InvalidSymbols,
  MalformedResponse,
  RateLimited,
  RegionRestricted
} from "./BinanceError.js"
import { RateLimitStore } from "./RateLimitStore.js"

/** The fields of Binance's FULL 24h ticker the platform reads; unknown fields are ignored. */
export const Ticker24h = Schema.Struct({
  symbol: Schema.String,
  lastPrice: DecimalString,
  priceChangePercent: DecimalString,
  volume: DecimalString,
  quoteVolume: Schema.optional(DecimalString),
  openTime: Schema.Number,
  closeTime: Schema.Number
})
export type Ticker24h = typeof Ticker24h.Type

const BinanceErrorBody = Schema.parseJson(Schema.Struct({ code: Schema.Number, msg: Schema.String }))
const decodeErrorBody = Schema.decodeUnknownOption(BinanceErrorBody)
const decodeTicker = Schema.decodeUnknownEither(Ticker24h)

/** Binance's request-weight budget per minute (REQUEST_WEIGHT, per IP). */
export const WEIGHT_LIMIT_1M = 6000
/** Above this share of the budget the client waits for the next minute instead of risking a 429. */
const WEIGHT_SAFETY_SHARE = 0.9

export interface WeightObservation {
  readonly usedWeight1m: number
  readonly observedAt: number
}

export interface TickerBatch {
  readonly tickers: ReadonlyArray<Ticker24h>
  /** Array entries that did not have the documented shape, skipped with a reason. */
  readonly skipped: ReadonlyArray<string>
}

/** Weight of one `GET /api/v3/ticker/24hr?symbols=[...]` call (BINANCE_API.md §1.4). */
export const ticker24hWeight = (symbolCount: number): number => (symbolCount <= 20 ? 2 : symbolCount <= 100 ? 40 : 80)

/**
 * The longest wait Binance imposes (its ban ladder ends at 3 days). A longer Retry-After (a broken
 * proxy) or a stored end further away (an edited file) is cut to it, so polling can never stop for good.
 */
export const MAX_RATE_LIMIT_WAIT = Duration.days(3)

const retryAfterOf = (headers: Readonly<Record<string, string>>, fallbackSeconds: number): Duration.Duration => {
  const seconds = Number(headers["retry-after"])
  return Duration.min(
    Duration.seconds(Number.isFinite(seconds) && seconds >= 0 ? seconds : fallbackSeconds),
    MAX_RATE_LIMIT_WAIT
  )
}

const make = Effect.gen(function* () {
  const baseUrl = yield* AppConfig.binanceBaseUrl
  const timeout = yield* AppConfig.binanceTimeout
  const client = (yield* HttpClient.HttpClient).pipe(
    HttpClient.mapRequest(HttpClientRequest.prependUrl(baseUrl)),
    HttpClient.mapRequest(HttpClientRequest.acceptJson)
  )
  /** No request leaves before this instant (epoch ms): set by Retry-After and by the weight guard. */
  const blockedUntil = yield* Ref.make(0)
  // A 429/418 outlives the process when a store is provided; without one it is kept in memory only.
  const store = yield* Effect.serviceOption(RateLimitStore)
  if (Option.isSome(store)) {
    const earlier = yield* store.value.load
    const startedAt = yield* Clock.currentTimeMillis
    if (Option.isSome(earlier) && earlier.value.until > startedAt) {
      const until = Math.min(earlier.value.until, startedAt + Duration.toMillis(MAX_RATE_LIMIT_WAIT))
      yield* Ref.set(blockedUntil, until)
      yield* Effect.logWarning(
        `Binance rate limit from an earlier run: no request to Binance before ${isoInstant(until)} (HTTP ${earlier.value.status})`
      )
    }
  }
  const weight = yield* Ref.make(Option.none<WeightObservation>())
  const metrics = Option.getOrUndefined(yield* Effect.serviceOption(Metrics))
  /** Counts one request by path and status; "error" when no answer came. */
  const counted = (path: string, status: number | "error") => {
    metrics?.binanceRequests.inc({ endpoint: path, status: String(status) })
  }
  if (metrics !== undefined) {
    // Binance's weight counter starts again every minute: an observation from an earlier minute is 0 now.
    yield* metrics.probe(
      gauges.binanceUsedWeight,
      Effect.zipWith(Ref.get(weight), Clock.currentTimeMillis, (observed, now) =>
        Option.isSome(observed) ? [{ labels: {}, value: observed.value.observedAt >= now - (now % MINUTE_MS) ? observed.value.usedWeight1m : 0 }] : []
      )
    )
    const waitMs = Effect.zipWith(Ref.get(blockedUntil), Clock.currentTimeMillis, (until, now) => Math.max(0, until - now))
    yield* metrics.probe(gauges.binanceRateLimited, Effect.map(waitMs, (ms) => [{ labels: {}, value: ms > 0 ? 1 : 0 }]))
    yield* metrics.probe(gauges.binanceRateLimitWait, Effect.map(waitMs, (ms) => [{ labels: {}, value: Math.ceil(ms / 1000) }]))
  }

  const waitForClearance = Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const observed = yield* Ref.get(weight)
    const minuteStart = now - (now % MINUTE_MS)
    if (
      Option.isSome(observed) &&
      observed.value.observedAt >= minuteStart &&
      observed.value.usedWeight1m >= WEIGHT_LIMIT_1M * WEIGHT_SAFETY_SHARE
    ) {
      yield* Effect.logWarning("request weight near Binance's limit; waiting for the next minute").pipe(
        Effect.annotateLogs({ usedWeight1m: observed.value.usedWeight1m })
      )
      yield* Ref.update(blockedUntil, (t) => Math.max(t, minuteStart + MINUTE_MS))
    }
    const until = yield* Ref.get(blockedUntil)
    if (until > now) yield* Effect.sleep(Duration.millis(until - now))
  })

  /** Holds every request until `retryAfter` from now, and records that end where a restart finds it. */
  const block = (status: 429 | 418, retryAfter: Duration.Duration) =>
    Effect.gen(function* () {
      const until = (yield* Clock.currentTimeMillis) + Duration.toMillis(retryAfter)
      yield* Ref.update(blockedUntil, (t) => Math.max(t, until))
      if (Option.isSome(store)) yield* store.value.save({ until, status })
    })

  /** One GET to Binance: waits for clearance, classifies every failure into a BinanceError, returns parsed JSON. */
  const getJson = (path: string, params: Record<string, string>, symbols: ReadonlyArray<string>) =>
    Effect.gen(function* () {
      yield* waitForClearance
      const response = yield* client.get(path, { urlParams: params }).pipe(
        Effect.flatMap((res) => Effect.map(res.text, (body) => ({ status: res.status, headers: res.headers, body }))),
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            new BinanceUnavailable({ reason: "timeout", detail: `no answer within ${Duration.format(timeout)}` })
        }),
        Effect.catchTags({
          RequestError: (e) => Effect.fail(new BinanceUnavailable({ reason: "network", detail: e.message })),
          ResponseError: (e) => Effect.fail(new BinanceUnavailable({ reason: "network", detail: e.message }))
        }),
        Effect.tapBoth({ onFailure: () => Effect.sync(() => counted(path, "error")), onSuccess: (r) => Effect.sync(() => counted(path, r.status)) })
      )
      const used = Number(response.headers["x-mbx-used-weight-1m"] ?? response.headers["x-mbx-used-weight"])
      if (Number.isFinite(used)) {
        const observedAt = yield* Clock.currentTimeMillis
        yield* Ref.set(weight, Option.some({ usedWeight1m: used, observedAt }))
        yield* Effect.logDebug("binance request weight").pipe(Effect.annotateLogs({ path, usedWeight1m: used }))
      }
      const { status, headers, body } = response
      if (status === 429 || status === 418) {
        const retryAfter = retryAfterOf(headers, status === 418 ? 120 : 60)
        yield* block(status, retryAfter)
        return yield* new RateLimited({ status, retryAfter })
      }
      if (status === 451) return yield* new RegionRestricted({ baseUrl })
      if (status >= 500) {
        return yield* new BinanceUnavailable({ reason: "status", detail: `HTTP ${status} from ${path}` })
      }
      if (status >= 400) {
        const parsed = decodeErrorBody(body)
        if (Option.isSome(parsed) && parsed.value.code === -1121) return yield* new InvalidSymbols({ symbols })
        return yield* new BinanceRejected({
          status,
          code: Option.getOrUndefined(Option.map(parsed, (p) => p.code)),
          msg: Option.match(parsed, { onNone: () => body.slice(0, 200), onSome: (p) => p.msg })
        })
      }
      return yield* Effect.try({
        try: () => JSON.parse(body) as unknown,
        catch: () => new MalformedResponse({ detail: `${path} answered HTTP ${status} with a body that is not JSON` })
      })
    })

  /** All symbols' 24h tickers in one request; entries of the wrong shape are skipped and reported. */
  const ticker24h = (symbols: ReadonlyArray<TickerSymbol>) =>
    Effect.gen(function* () {
      const json = yield* getJson("/api/v3/ticker/24hr", { symbols: JSON.stringify(symbols) }, symbols)
      if (!Array.isArray(json)) {
        return yield* new MalformedResponse({ detail: "/api/v3/ticker/24hr did not answer with an array" })
      }
      const tickers: Array<Ticker24h> = []
      const skipped: Array<string> = []
      for (const entry of json) {
        const decoded = decodeTicker(entry)
        if (Either.isRight(decoded)) tickers.push(decoded.right)
        else skipped.push(ParseResult.TreeFormatter.formatErrorSync(decoded.left))
      }
      if (tickers.length === 0 && skipped.length > 0) {
        return yield* new MalformedResponse({ detail: `no ticker had the documented shape: ${skipped[0]}` })
      }
      const batch: TickerBatch = { tickers, skipped }
      return batch
    }).pipe(Effect.withSpan("BinanceClient.ticker24h"))

  /** Whether Binance lists `symbol` (weight 2). Used to name the culprit after a -1121 on a list. */
  const symbolExists = (symbol: TickerSymbol) =>
    getJson("/api/v3/ticker/price", { symbol }, [symbol]).pipe(
      Effect.as(true),
      Effect.catchTag("InvalidSymbols", () => Effect.succeed(false))
    )

  /**
   * Up to `limit` (max 1000) klines from `startTime` on, oldest first, as Binance's raw rows
   * (weight 2). The last row may be the still-open candle.
   */
  const klines = (symbol: TickerSymbol, interval: string, startTime: number, limit: number) =>
    getJson(
      "/api/v3/klines",
      { symbol, interval, startTime: String(startTime), limit: String(Math.min(Math.max(limit, 1), 1000)) },
      [symbol]
    ).pipe(
      Effect.flatMap((json) =>
        Array.isArray(json)
          ? Effect.succeed(json as ReadonlyArray<unknown>)
          : Effect.fail(new MalformedResponse({ detail: "/api/v3/klines did not answer with an array" }))
      ),
      Effect.withSpan("BinanceClient.klines")
    )

  /**
   * Up to `limit` (max 1000) aggregate trades, oldest first (weight 4): from the id `fromId` on, or from
   * `startTime` (epoch ms). A row not of the documented shape fails the whole answer: a repair must
   * not store part of a range and call it whole.
   */
  const aggTrades = (symbol: TickerSymbol, from: { readonly fromId: number } | { readonly startTime: number }, limit = 1000) =>
    getJson(
      "/api/v3/aggTrades",
      {
        symbol,
        ...("fromId" in from ? { fromId: String(from.fromId) } : { startTime: String(from.startTime) }),
        limit: String(Math.min(Math.max(limit, 1), 1000))
      },
      [symbol]
    ).pipe(
      Effect.flatMap((json) => {
        if (!Array.isArray(json)) return Effect.fail(new MalformedResponse({ detail: "/api/v3/aggTrades did not answer with an array" }))
        const trades: Array<Trade> = []
        for (const row of json) {
          const trade = typeof row === "object" && row !== null ? fromBinanceAggTrade(symbol, row as Record<string, unknown>, TRADE_REST_SOURCE) : Either.left("not an object")
          if (Either.isLeft(trade)) return Effect.fail(new MalformedResponse({ detail: `/api/v3/aggTrades answered a row that is not an aggregate trade: ${trade.left}` }))
          trades.push(trade.right)
        }
        return Effect.succeed(trades as ReadonlyArray<Trade>)
      }),
      Effect.withSpan("BinanceClient.aggTrades")
    )

  return {
    baseUrl,
    ticker24h,
    klines,
    aggTrades,
    symbolExists,
    /** The last `x-mbx-used-weight-1m` Binance reported, with when. */
    usedWeight: Ref.get(weight),
    /**
     * The end (epoch ms) of the latest wait imposed on requests: Retry-After or the weight guard; 0 when
     * there never was one. In the past once it is over, so a caller can tell whether it waited.
     */
    blockedUntil: Ref.get(blockedUntil)
  } as const
})

export class BinanceClient extends Effect.Service<BinanceClient>()("binance/BinanceClient", {
  // scoped: its /metrics probes last as long as the client
  scoped: make,
  dependencies: [NodeHttpClient.layerUndici]
}) {}

export type { BinanceError }
