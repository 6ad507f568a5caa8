import {
  HttpApiBuilder,
  HttpApiSwagger,
  type HttpApp,
  HttpMiddleware,
  HttpRouter,
  HttpServer,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { Chunk, Effect, Layer, Schema } from "effect"
import { createHash } from "node:crypto"
import { BiReports } from "../bi/BiReports.js"
import { makeClientErrorsMiddleware } from "./ClientErrors.js"
import { storeErrorsMiddleware } from "./StoreErrors.js"
import { storeLocation } from "../store/Store.js"
import { type Answer, AnswerCache, jsonAnswer, latestResponse, toResponse } from "./AnswerCache.js"
import { ApiKeyAuthLive, SecurityLive } from "./security/middleware.js"
import { TickRepo } from "../store/TickRepo.js"
import { bucketStart, candlesJson, intervalMs } from "../domain/Candles.js"
import { Api, BadRange, CANDLES_MAX, encodeCursor, FeatureJson } from "./Api.js"
import { SystemLive } from "./HealthHttp.js"
import { DashboardLive } from "../web/Dashboard.js"
import { HttpMetricsLive } from "./HttpMetrics.js"
import { KnownSymbols } from "./KnownSymbols.js"
import { LiveFeed } from "./live/LiveFeed.js"
import { LiveHttpLive } from "./live/StreamHttp.js"
import { AggTradesLive, CoverageLive, etagMatches, tradesCsvHandler } from "./TradesHttp.js"

/** The headers that point from one page of /trades/range to the next. */
const nextPageHeaders = (requestUrl: string, lastMicros: number) => {
  const next = encodeCursor(lastMicros)
  const url = new URL(requestUrl, "http://localhost")
  url.searchParams.set("cursor", next)
  return { "x-next-cursor": next, link: `<${url.pathname}${url.search}>; rel="next"` }
}

const TradesLive = HttpApiBuilder.group(Api, "trades", (handlers) =>
  Effect.gen(function* () {
    const repo = yield* TickRepo
    const known = yield* KnownSymbols
    const cache = yield* AnswerCache
    return handlers
      .handle("symbols", () => Effect.orDie(repo.symbols))
      .handle("latest", ({ urlParams: { limit, symbol } }) =>
        Effect.zipRight(known.require(symbol), latestResponse(cache, repo.latestJson(symbol, limit)))
      )
      .handle("range", ({ urlParams: { cursor, end, limit, start, symbol } }) =>
        Effect.gen(function* () {
          yield* known.require(symbol)
          const { url } = yield* HttpServerRequest.HttpServerRequest
          const from = cursor === undefined ? start : Math.max(start, cursor + 1)
          const page = Effect.map(Effect.orDie(repo.rangeJson(symbol, from, end, limit)), (page) =>
            jsonAnswer(page.json, page.more && page.lastMicros !== null ? nextPageHeaders(url, page.lastMicros) : {})
          )
          return toResponse(yield* cache.answer("live", page))
        })
      )
  })
)

const encodeFeatures = Schema.encodeSync(Schema.Array(FeatureJson))

const MarketLive = HttpApiBuilder.group(Api, "market", (handlers) =>
  Effect.gen(function* () {
    const reports = yield* BiReports
    const known = yield* KnownSymbols
    const cache = yield* AnswerCache
    return handlers
      .handle("candles", ({ urlParams: { end, interval, start, symbol } }) =>
        Effect.gen(function* () {
          yield* known.require(symbol)
          const from = Math.floor(start / 1000)
          const to = Math.ceil(end / 1000)
          const first = bucketStart(from, interval) // the candle holding `start`
          const buckets = Math.ceil((to - first) / intervalMs(interval))
          if (buckets > CANDLES_MAX) {
            return yield* new BadRange({
              message: `${buckets} ${interval} candles asked; at most ${CANDLES_MAX} per answer: narrow start/end or use a coarser interval`
            })
          }
          const candles = Effect.map(Effect.orDie(reports.candles(symbol, interval, first, to)), (candles) =>
            jsonAnswer(candlesJson(candles.filter((c) => c.openTime >= first && c.openTime < to)))
          )
          return toResponse(yield* cache.answer("live", candles))
        })
      )
      .handle("features", ({ urlParams: { days, symbol } }) =>
        known.require(symbol).pipe(
          Effect.zipRight(
            cache.answer(
              "reports",
              Effect.map(Effect.orDie(reports.featureRows(symbol, days)), (rows) => jsonAnswer(JSON.stringify(encodeFeatures(rows))))
            )
          ),
          Effect.map((answer) => toResponse(answer))
        )
      )
  })
)

/** How long BI tools and caches may reuse a report, per contract. */
const maxAge = { daily: 300, latest: 15 } as const

/** A CSV report as an answer, with an ETag of its bytes. */
export const csvAnswer = (body: string, options: { readonly maxAge: number; readonly filename: string }): Answer => {
  const bytes = new TextEncoder().encode(body)
  return {
    body: bytes,
    contentType: "text/csv; charset=utf-8",
    headers: {
      etag: `"${createHash("sha256").update(bytes).digest("base64url").slice(0, 32)}"`,
      "cache-control": `public, max-age=${options.maxAge}`,
      "content-disposition": `inline; filename="${options.filename}"`
    }
  }
}

/** The answer, or a bodyless 304 with its ETag and Cache-Control when If-None-Match names it. */
export const conditionalResponse = (answer: Answer, ifNoneMatch: string | undefined) => {
  if (!etagMatches(ifNoneMatch, answer.headers["etag"] ?? "")) return toResponse(answer)
  const { "content-disposition": _, ...headers } = answer.headers
  return HttpServerResponse.empty({ status: 304, headers })
}

const BiLive = HttpApiBuilder.group(Api, "bi", (handlers) =>
  Effect.gen(function* () {
    const reports = yield* BiReports
    const known = yield* KnownSymbols
    const cache = yield* AnswerCache
    const trades = yield* tradesCsvHandler
    /** A report answer: kept (a matching If-None-Match then costs no report at all), or built and kept. */
    const report = (ifNoneMatch: string | undefined, body: Effect.Effect<string>, options: { readonly maxAge: number; readonly filename: string }) =>
      Effect.map(
        cache.answer("reports", Effect.map(body, (text) => csvAnswer(text, options))),
        (answer) => conditionalResponse(answer, ifNoneMatch)
      )
    const daily =
      (build: (symbol: string, days: number) => Effect.Effect<string, unknown>, name: string) =>
      ({ headers, urlParams: { days, symbol } }: { headers: { readonly "if-none-match"?: string | undefined }; urlParams: { readonly symbol: string; readonly days: number } }) =>
        known.require(symbol).pipe(
          Effect.zipRight(
            report(headers["if-none-match"], Effect.orDie(build(symbol, days)), { maxAge: maxAge.daily, filename: `${name}_${symbol}.csv` })
          )
        )
    return handlers
      .handle("dailyOhlc", daily(reports.dailyOhlc, "daily_ohlc"))
      .handle("dailyVolume", daily(reports.dailyVolume, "daily_volume"))
      .handle("dailyFeatures", daily(reports.dailyFeatures, "daily_features"))
      .handle("trades", trades)
      .handle("latestPrices", ({ headers, urlParams }) =>
        Effect.gen(function* () {
          const symbols = urlParams.symbols ?? (yield* known.all)
          yield* Effect.forEach(symbols, known.require, { discard: true })
          return yield* report(headers["if-none-match"], Effect.orDie(reports.latestPrices(symbols)), {
            maxAge: maxAge.latest,
            filename: "latest_prices.csv"
          })
        })
      )
  })
)

/**
 * The API's handlers, and the answer cache they share (exposed for tests and metrics). The
 * repositories come from the store the role was given (store/Store.ts): SQLite or PostgreSQL.
 */
export const ApiLive = HttpApiBuilder.api(Api).pipe(
  Layer.provide([SystemLive, TradesLive, MarketLive, BiLive, AggTradesLive, CoverageLive, LiveHttpLive]),
  Layer.provide([KnownSymbols.Default, BiReports.Default, ApiKeyAuthLive, LiveFeed.Default]),
  Layer.provideMerge(AnswerCache.Default)
)

/**
 * JSON 404/405 (with Allow) for requests no route takes, and a readable sentence leading every 400
 * decode failure. The routes are read from the router at each miss, so /docs and /openapi.json count.
 */
const ClientErrorsLive = HttpApiBuilder.middleware(
  Effect.gen(function* () {
    const router = yield* HttpApiBuilder.Router
    const clientErrors = makeClientErrorsMiddleware(Effect.map(router.router, (r) => Chunk.toReadonlyArray(r.routes)))
    const storeErrors = storeErrorsMiddleware((yield* Effect.orDie(storeLocation)).reason)
    return <E, R>(app: HttpApp.Default<E, R>) => storeErrors(clientErrors(app))
  })
).pipe(Layer.provide(HttpApiBuilder.Router.Live))

/**
 * The HTTP server over `ApiLive`, with the OpenAPI document at /openapi.json and interactive docs
 * at /docs; `server` supplies the listening socket (NodeHttpServer in production and in tests).
 */
export const httpServer = <A, E, R>(
  server: Layer.Layer<A | HttpServer.HttpServer | HttpRouter.HttpRouter.DefaultServices, E, R>
) =>
  HttpApiBuilder.serve().pipe(
    // no span per request: the platform exports no traces, and tracing costs a fifth of a small request
    HttpMiddleware.withTracerDisabledWhen(() => true),
    Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
    Layer.provide(DashboardLive),
    Layer.provide(HttpMetricsLive),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(SecurityLive),
    Layer.provide(ClientErrorsLive),
    Layer.provideMerge(ApiLive),
    HttpServer.withLogAddress,
    Layer.provideMerge(server)
  )
