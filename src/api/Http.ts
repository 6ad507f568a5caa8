import {
  HttpApiBuilder,
  HttpApiSwagger,
  HttpMiddleware,
  HttpRouter,
  HttpServer,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { Chunk, Effect, Layer } from "effect"
import { createHash } from "node:crypto"
import { BiReports } from "../bi/BiReports.js"
import * as AppConfig from "../Config.js"
import { CandleRepo } from "../store/CandleRepo.js"
import { makeClientErrorsMiddleware } from "./ClientErrors.js"
import { HotResponses } from "./HotPath.js"
import { ApiKeyAuthLive, SecurityLive } from "./security/middleware.js"
import { TickRepo } from "../store/TickRepo.js"
import { eventKey } from "../domain/Ticker.js"
import { bucketStart, intervalMs } from "../domain/Candles.js"
import { Api, BadRange, CANDLES_MAX, encodeCursor, UnknownSymbol } from "./Api.js"
import { SystemLive } from "./HealthHttp.js"

/** A symbol is known when it is configured (SYMBOLS) or has stored data; anything else is a client error. */
class KnownSymbols extends Effect.Service<KnownSymbols>()("api/KnownSymbols", {
  effect: Effect.gen(function* () {
    const repo = yield* TickRepo
    const configured: ReadonlyArray<string> = yield* AppConfig.symbols
    const all = Effect.map(Effect.orDie(repo.symbols), (stored) =>
      [...new Set([...configured, ...stored.map((s) => s.symbol)])].sort()
    )
    const require = (symbol: string) =>
      configured.includes(symbol)
        ? Effect.void
        : Effect.flatMap(all, (known) =>
            known.includes(symbol)
              ? Effect.void
              : Effect.fail(
                  new UnknownSymbol({
                    symbol,
                    known,
                    message: `no data for symbol ${symbol}: it is neither configured (SYMBOLS) nor stored; known symbols: ${known.join(", ")}`
                  })
                )
          )
    return { all, require } as const
  })
}) {}

const TradesLive = HttpApiBuilder.group(Api, "trades", (handlers) =>
  Effect.gen(function* () {
    const repo = yield* TickRepo
    const known = yield* KnownSymbols
    const hot = yield* HotResponses
    return handlers
      .handle("symbols", () => Effect.orDie(repo.symbols))
      .handle("latest", ({ urlParams: { limit, symbol } }) =>
        Effect.gen(function* () {
          yield* known.require(symbol)
          const body = JSON.stringify(yield* Effect.orDie(repo.latest(symbol, limit)))
          yield* hot.remember((yield* HttpServerRequest.HttpServerRequest).url, body)
          return HttpServerResponse.text(body, { contentType: "application/json" })
        })
      )
      .handle("range", ({ urlParams: { cursor, end, limit, start, symbol } }) =>
        Effect.gen(function* () {
          yield* known.require(symbol)
          const from = cursor === undefined ? start : Math.max(start, cursor + 1)
          // one row more than asked tells whether another page follows
          const rows = yield* Effect.orDie(repo.range(symbol, from, end, limit + 1))
          if (rows.length <= limit) return rows
          const page = rows.slice(0, limit)
          const next = encodeCursor(eventKey(page[page.length - 1]!).tsMicros)
          const request = yield* HttpServerRequest.HttpServerRequest
          const url = new URL(request.url, "http://localhost")
          url.searchParams.set("cursor", next)
          return yield* HttpServerResponse.json(page, {
            headers: { "x-next-cursor": next, link: `<${url.pathname}${url.search}>; rel="next"` }
          }).pipe(Effect.orDie)
        })
      )
  })
)

const MarketLive = HttpApiBuilder.group(Api, "market", (handlers) =>
  Effect.gen(function* () {
    const reports = yield* BiReports
    const known = yield* KnownSymbols
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
          const candles = yield* Effect.orDie(reports.candleRows(symbol, interval, first, to))
          return candles
            .filter((c) => c.openTime >= first && c.openTime < to)
            .map((c) => ({
              symbol: c.symbol,
              interval: c.interval,
              open_time: new Date(c.openTime).toISOString(),
              open: c.open,
              high: c.high,
              low: c.low,
              close: c.close,
              volume: c.volume,
              quote_volume: c.quoteVolume,
              trades: c.trades,
              closed: c.closed
            }))
        })
      )
      .handle("features", ({ urlParams: { days, symbol } }) =>
        known.require(symbol).pipe(Effect.zipRight(Effect.orDie(reports.featureRows(symbol, days))))
      )
  })
)

/** How long BI tools and caches may reuse a report, per contract. */
const maxAge = { daily: 300, latest: 15 } as const

/** A CSV answer with an ETag of its bytes; a matching If-None-Match gets a bodyless 304 instead. */
export const csvResponse = (body: string, options: { readonly maxAge: number; readonly ifNoneMatch: string | undefined; readonly filename: string }) => {
  const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 32)}"`
  const headers = { etag, "cache-control": `public, max-age=${options.maxAge}` }
  const presented = (options.ifNoneMatch ?? "").split(",").map((t) => t.trim().replace(/^W\//, ""))
  if (presented.includes(etag) || presented.includes("*")) return HttpServerResponse.empty({ status: 304, headers })
  return HttpServerResponse.text(body, {
    contentType: "text/csv; charset=utf-8",
    headers: { ...headers, "content-disposition": `inline; filename="${options.filename}"` }
  })
}

const BiLive = HttpApiBuilder.group(Api, "bi", (handlers) =>
  Effect.gen(function* () {
    const reports = yield* BiReports
    const known = yield* KnownSymbols
    const daily =
      (report: (symbol: string, days: number) => Effect.Effect<string, unknown>, name: string) =>
      ({ headers, urlParams: { days, symbol } }: { headers: { readonly "if-none-match"?: string | undefined }; urlParams: { readonly symbol: string; readonly days: number } }) =>
        known.require(symbol).pipe(
          Effect.zipRight(Effect.orDie(report(symbol, days))),
          Effect.map((body) =>
            csvResponse(body, { maxAge: maxAge.daily, ifNoneMatch: headers["if-none-match"], filename: `${name}_${symbol}.csv` })
          )
        )
    return handlers
      .handle("dailyOhlc", daily(reports.dailyOhlc, "daily_ohlc"))
      .handle("dailyVolume", daily(reports.dailyVolume, "daily_volume"))
      .handle("dailyFeatures", daily(reports.dailyFeatures, "daily_features"))
      .handle("latestPrices", ({ headers, urlParams }) =>
        Effect.gen(function* () {
          const symbols = urlParams.symbols ?? (yield* known.all)
          yield* Effect.forEach(symbols, known.require, { discard: true })
          const body = yield* Effect.orDie(reports.latestPrices(symbols))
          return csvResponse(body, { maxAge: maxAge.latest, ifNoneMatch: headers["if-none-match"], filename: "latest_prices.csv" })
        })
      )
  })
)

export const ApiLive = HttpApiBuilder.api(Api).pipe(
  Layer.provide([SystemLive, TradesLive, MarketLive, BiLive]),
  Layer.provide([KnownSymbols.Default, BiReports.Default.pipe(Layer.provide(CandleRepo.Default)), ApiKeyAuthLive])
)

/**
 * JSON 404/405 (with Allow) for requests no route takes, and a readable sentence leading every 400
 * decode failure. The routes are read from the router at each miss, so /docs and /openapi.json count.
 */
const ClientErrorsLive = HttpApiBuilder.middleware(
  Effect.map(HttpApiBuilder.Router, (router) =>
    makeClientErrorsMiddleware(Effect.map(router.router, (r) => Chunk.toReadonlyArray(r.routes)))
  )
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
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(SecurityLive),
    Layer.provide(ClientErrorsLive),
    Layer.provide(ApiLive),
    HttpServer.withLogAddress,
    Layer.provideMerge(server)
  )
