import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"

const ComponentState = Schema.Literal("up", "down", "starting", "not_running")

export const HealthFields = {
  status: Schema.Literal("ok", "down"),
  components: Schema.Struct({
    producer: Schema.Struct({
      state: ComponentState,
      symbols: Schema.Array(Schema.String),
      last_success_at: Schema.NullOr(Schema.String),
      last_error: Schema.NullOr(Schema.String),
      last_error_at: Schema.NullOr(Schema.String),
      used_weight_1m: Schema.NullOr(Schema.Number)
    }),
    broker: Schema.Struct({ state: ComponentState, mode: Schema.String, detail: Schema.NullOr(Schema.String) }),
    store: Schema.Struct({ state: ComponentState, path: Schema.String, detail: Schema.NullOr(Schema.String) })
  })
}
export const HealthReport = Schema.Struct(HealthFields)
export type HealthReport = typeof HealthReport.Type

/** /health answers 503 with the same report when a component is down. */
export class Unhealthy extends Schema.TaggedError<Unhealthy>()("Unhealthy", HealthFields, HttpApiSchema.annotations({ status: 503 })) {}

export class SystemApi extends HttpApiGroup.make("system")
  .add(
    HttpApiEndpoint.get("live", "/health/live")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
      .annotate(OpenApi.Summary, "Liveness: 200 while the process serves HTTP, whatever Binance or the broker do")
  )
  .add(
    HttpApiEndpoint.get("health", "/health")
      .addSuccess(HealthReport)
      .addError(Unhealthy)
      .annotate(OpenApi.Summary, "Per-component state; 503 when a component is down")
  ) {}

