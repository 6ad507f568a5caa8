import { HttpApiBuilder, HttpApiSwagger, HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { Effect, Layer, Option } from "effect"
import * as AppConfig from "../Config.js"
import { Health } from "../status/Health.js"
import { TickRepo } from "../store/TickRepo.js"
import { Api, type HealthReport, Unhealthy, UnknownSymbol } from "./Api.js"

/** The platform's condition as /health reports it; the store is checked live when this process has one. */
export const currentHealth = Effect.gen(function* () {
  const health = yield* Health
  const repo = yield* Effect.serviceOption(TickRepo)
  const storagePath = yield* Effect.orDie(AppConfig.storagePath) // validated at start-up
  const producer = yield* health.producer
  const broker = yield* health.broker
  const store = Option.isNone(repo)
    ? { state: "not_running" as const, path: storagePath, detail: null }
    : yield* repo.value.ping.pipe(
        Effect.as({ state: "up" as const, path: storagePath, detail: null }),
        Effect.catchAll((e) => Effect.succeed({ state: "down" as const, path: storagePath, detail: e.message }))
      )
  const down = [producer.state, broker.state, store.state].includes("down")
  const report: HealthReport = { status: down ? "down" : "ok", components: { producer, broker, store } }
  return report
})

const SystemLive = HttpApiBuilder.group(Api, "system", (handlers) =>
  Effect.gen(function* () {
    const context = yield* Effect.context<Health | TickRepo>()
    return handlers.handle("health", () =>
      currentHealth.pipe(
        Effect.provide(context),
        Effect.flatMap((report) => (report.status === "down" ? Effect.fail(new Unhealthy(report)) : Effect.succeed(report)))
      )
    )
  })
)

const TradesLive = HttpApiBuilder.group(Api, "trades", (handlers) =>
  Effect.gen(function* () {
    const repo = yield* TickRepo
    const configured = yield* AppConfig.symbols
    /** A symbol is known when it is configured or has stored data; anything else is a client error. */
    const requireKnown = (symbol: string) =>
      Effect.gen(function* () {
        if (configured.includes(symbol as never)) return
        const stored = (yield* repo.symbols).map((s) => s.symbol)
        if (stored.includes(symbol)) return
        const known = [...new Set([...configured, ...stored])].sort()
        return yield* new UnknownSymbol({
          symbol,
          known,
          message: `no data for symbol ${symbol}: it is neither configured (SYMBOLS) nor stored; known symbols: ${known.join(", ")}`
        })
      })
    return handlers
      .handle("symbols", () => Effect.orDie(repo.symbols))
      .handle("latest", ({ urlParams: { limit, symbol } }) =>
        requireKnown(symbol).pipe(
          Effect.zipRight(repo.latest(symbol, limit)),
          Effect.catchTag("SqlError", "ParseError", Effect.die)
        )
      )
      .handle("range", ({ urlParams: { end, limit, start, symbol } }) =>
        requireKnown(symbol).pipe(
          Effect.zipRight(repo.range(symbol, start, end, limit)),
          Effect.catchTag("SqlError", "ParseError", Effect.die)
        )
      )
  })
)

export const ApiLive = HttpApiBuilder.api(Api).pipe(Layer.provide([SystemLive, TradesLive]))

/**
 * The HTTP server over `ApiLive`, with the OpenAPI document at /openapi.json and interactive docs
 * at /docs; `server` supplies the listening socket (NodeHttpServer in production and in tests).
 */
export const httpServer = <A, E, R>(
  server: Layer.Layer<A | HttpServer.HttpServer | HttpRouter.HttpRouter.DefaultServices, E, R>
) =>
  HttpApiBuilder.serve().pipe(
    Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(ApiLive),
    HttpServer.withLogAddress,
    Layer.provideMerge(server)
  )

/**
 * A server with /health only, for the producer and consumer roles in their own processes
 * (HEALTH_PORT): same report and status codes as the API's /health.
 */
export const healthServer = <A, E, R>(
  server: Layer.Layer<A | HttpServer.HttpServer | HttpRouter.HttpRouter.DefaultServices, E, R>
) =>
  HttpRouter.empty.pipe(
    HttpRouter.get(
      "/health",
      Effect.flatMap(currentHealth, (report) => HttpServerResponse.json(report, { status: report.status === "ok" ? 200 : 503 }))
    ),
    HttpServer.serve(),
    HttpServer.withLogAddress,
    Layer.provideMerge(server)
  )
