import { HttpApiBuilder, HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { Effect, Layer, Option } from "effect"
import * as AppConfig from "../Config.js"
import { Health } from "../status/Health.js"
import { TickRepo } from "../store/TickRepo.js"
import { Api } from "./Api.js"
import { type HealthReport, Unhealthy } from "./HealthApi.js"

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

export const SystemLive = HttpApiBuilder.group(Api, "system", (handlers) =>
  Effect.gen(function* () {
    const context = yield* Effect.context<Health | TickRepo>()
    return handlers.handle("live", () => Effect.succeed({ status: "ok" as const })).handle("health", () =>
      currentHealth.pipe(
        Effect.provide(context),
        Effect.flatMap((report) => (report.status === "down" ? Effect.fail(new Unhealthy(report)) : Effect.succeed(report)))
      )
    )
  })
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
