import { HttpApiBuilder, HttpApp, HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Clock, Duration, Effect, Either, Layer, Option } from "effect"
import { formatInstantMicros } from "../domain/Ticker.js"
import * as AppConfig from "../Config.js"
import { Health } from "../status/Health.js"
import { Metrics } from "../status/Metrics.js"
import { storeLocation } from "../store/Store.js"
import { TickRepo } from "../store/TickRepo.js"
import { Api } from "./Api.js"
import { unroutedResponse } from "./ClientErrors.js"
import { API_CSP, securityHeaders, type SecuritySettings } from "./Security.js"
import { type HealthReport, METRICS_PATH, Unhealthy } from "./HealthApi.js"

/**
 * How long /health may wait for the database. Past it the store is reported down: a health probe
 * must answer even when another process holds the database's lock.
 */
const STORE_DEADLINE = Duration.seconds(1)

const storeReport = Effect.gen(function* () {
  const health = yield* Health
  const repo = yield* Effect.serviceOption(TickRepo)
  const location = yield* Effect.orDie(storeLocation) // validated at start-up
  const path = location.kind === "postgres" ? location.where : yield* Effect.orDie(AppConfig.storagePath)
  const sinks = yield* health.sinks
  let newest = yield* health.newestStoredMicros
  let dbError: string | null = null
  if (Option.isSome(repo)) {
    const probe = yield* repo.value.newestMicros.pipe(
      Effect.timeoutFail({
        duration: STORE_DEADLINE,
        onTimeout: () => new Error(`the database did not answer within ${Duration.format(STORE_DEADLINE)} (locked by another process?)`)
      }),
      Effect.either
    )
    if (Either.isRight(probe)) newest = Math.max(newest, probe.right)
    else dbError = location.reason(probe.left)
  }
  const now = yield* Clock.currentTimeMillis
  const failing = sinks.find((s) => s.state === "down")
  const state =
    failing !== undefined || dbError !== null ? ("down" as const) : Option.isNone(repo) && sinks.length === 0 ? ("not_running" as const) : ("up" as const)
  return {
    state,
    path,
    detail: failing !== undefined ? failing.detail : dbError,
    since: failing?.since ?? null,
    newest_event_at: newest > 0 ? formatInstantMicros(newest) : null,
    newest_event_age_seconds: newest > 0 ? Math.max(0, Math.round((now * 1000 - newest) / 1e5) / 10) : null,
    sinks
  }
})

/**
 * The stream component: not running without connections; down while a handshake is refused (451) or
 * every connection is between connections; starting before the first data message.
 */
const streamReport = Effect.gen(function* () {
  const health = yield* Health
  const now = yield* Clock.currentTimeMillis
  const all = yield* health.streamConnections
  const connections = all.map(({ last_message_at_ms, ...c }) => ({
    ...c,
    last_message_age_ms: last_message_at_ms > 0 ? Math.max(0, now - last_message_at_ms) : null
  }))
  const rejected = connections.find((c) => c.state === "rejected")
  const waiting = connections.find((c) => c.state === "reconnecting")
  const state =
    connections.length === 0
      ? ("not_running" as const)
      : rejected !== undefined || (waiting !== undefined && connections.every((c) => c.state !== "connected"))
        ? ("down" as const)
        : connections.some((c) => c.state === "connected")
          ? ("up" as const)
          : ("starting" as const)
  return { state, detail: (rejected ?? waiting)?.detail ?? null, connections }
})

/** The platform's condition as /health reports it: 503 when a component is down or the producer is blocked. */
export const currentHealth = Effect.gen(function* () {
  const health = yield* Health
  const producer = yield* health.producer
  const broker = yield* health.broker
  const store = yield* storeReport
  const stream = yield* streamReport
  const down = [producer.state, broker.state, store.state, stream.state].some((s) => s === "down" || s === "blocked")
  const report: HealthReport = { status: down ? "down" : "ok", components: { producer, broker, stream, store } }
  return report
})

/** The Prometheus exposition of this process's Metrics; empty where the process has none (tests). */
const metricsResponse = Effect.flatMap(Effect.serviceOption(Metrics), (metrics) =>
  Option.isNone(metrics)
    ? Effect.succeed(HttpServerResponse.text("", { contentType: "text/plain; version=0.0.4; charset=utf-8" }))
    : Effect.map(metrics.value.exposition, ({ contentType, text }) =>
        HttpServerResponse.text(text, { contentType, headers: { "cache-control": "no-store" } })
      )
)

export const SystemLive = HttpApiBuilder.group(Api, "system", (handlers) =>
  Effect.gen(function* () {
    const context = yield* Effect.context<Health | TickRepo>()
    return handlers
      .handle("live", () => Effect.succeed({ status: "ok" as const }))
      .handle("health", () =>
        currentHealth.pipe(
          Effect.provide(context),
          Effect.flatMap((report) => (report.status === "down" ? Effect.fail(new Unhealthy(report)) : Effect.succeed(report)))
        )
      )
      .handle("metrics", () => metricsResponse)
  })
)

/**
 * A server with /health and /metrics only, for the producer and consumer roles in their own processes
 * (HEALTH_PORT): same report and status codes as the API's /health, the same exposition as the API's
 * /metrics, the security headers on every answer, and JSON 404/405 for anything else.
 */
const HEALTH_ONLY_ROUTES = [
  { method: "GET", path: "/health" },
  { method: "GET", path: METRICS_PATH }
]

export const healthServer = <A, E, R>(
  server: Layer.Layer<A | HttpServer.HttpServer | HttpRouter.HttpRouter.DefaultServices, E, R>,
  settings: SecuritySettings
) => {
  const headers = { ...securityHeaders(settings), "content-security-policy": API_CSP }
  const report = Effect.flatMap(currentHealth, (r) => HttpServerResponse.json(r, { status: r.status === "ok" ? 200 : 503 }))
  return HttpRouter.empty.pipe(
    HttpRouter.get("/health", report),
    // explicit, or the catch-all below would answer HEAD before the router's HEAD-as-GET fallback
    HttpRouter.head("/health", report),
    HttpRouter.get(METRICS_PATH, metricsResponse),
    HttpRouter.head(METRICS_PATH, metricsResponse),
    HttpRouter.all(
      "*",
      Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
        unroutedResponse(request, HEALTH_ONLY_ROUTES, "this port (HEALTH_PORT) serves GET /health and GET /metrics only")
      )
    ),
    // the response is written inside the app, so headers go on through a pre-response handler
    HttpServer.serve((app) =>
      Effect.zipRight(HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(HttpServerResponse.setHeaders(response, headers))), app)
    ),
    HttpServer.withLogAddress,
    Layer.provideMerge(server)
  )
}
