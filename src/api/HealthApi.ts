import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"

const ComponentState = Schema.Literal("up", "down", "blocked", "starting", "not_running")
const Instant = Schema.NullOr(Schema.String)

export const SinkHealth = Schema.Struct({
  name: Schema.String,
  state: Schema.Literal("up", "down"),
  detail: Schema.NullOr(Schema.String),
  since: Schema.String,
  last_success_at: Instant
})

export const StreamConnectionHealth = Schema.Struct({
  name: Schema.String,
  state: Schema.Literal("connecting", "connected", "reconnecting", "rejected"),
  streams: Schema.Number,
  connected_since: Instant,
  /** Since the last data message (pings are not data); null before the first. */
  last_message_age_ms: Schema.NullOr(Schema.Number),
  reconnects: Schema.Number,
  detail: Schema.NullOr(Schema.String)
})

export const HealthFields = {
  status: Schema.Literal("ok", "down"),
  components: Schema.Struct({
    producer: Schema.Struct({
      state: ComponentState,
      symbols: Schema.Array(Schema.String),
      last_success_at: Instant,
      last_error: Schema.NullOr(Schema.String),
      last_error_at: Instant,
      used_weight_1m: Schema.NullOr(Schema.Number),
      rate_limited_until: Instant
    }),
    broker: Schema.Struct({ state: ComponentState, mode: Schema.String, detail: Schema.NullOr(Schema.String) }),
    /** Binance WebSocket streams (SOURCE=stream or both): down when a handshake is refused or no connection carries data. */
    stream: Schema.Struct({
      state: ComponentState,
      detail: Schema.NullOr(Schema.String),
      connections: Schema.Array(StreamConnectionHealth)
    }),
    store: Schema.Struct({
      state: ComponentState,
      path: Schema.String,
      detail: Schema.NullOr(Schema.String),
      /** When the store went down (the first failing sink's `since`); null while up. */
      since: Instant,
      /** The newest stored event's timestamp_utc, and how old it is now. */
      newest_event_at: Instant,
      newest_event_age_seconds: Schema.NullOr(Schema.Number),
      /** The consumer's sinks as their last write left them (empty where no consumer runs). */
      sinks: Schema.Array(SinkHealth)
    })
  })
}
export const HealthReport = Schema.Struct(HealthFields)
export type HealthReport = typeof HealthReport.Type

/** /health answers 503 with the same report when a component is down. */
export class Unhealthy extends Schema.TaggedError<Unhealthy>()("Unhealthy", HealthFields, HttpApiSchema.annotations({ status: 503 })) {}

/** Served without a key, like /health: a scraper holds no API key. */
export const METRICS_PATH = "/metrics"

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
      .annotate(OpenApi.Summary, "Per-component state; 503 when a component is down or the producer is blocked")
  )
  .add(
    HttpApiEndpoint.get("metrics", METRICS_PATH)
      .addSuccess(HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4" }))
      .annotate(OpenApi.Summary, "Prometheus metrics (text format 0.0.4), public like /health")
  ) {}

