import { HttpApiBuilder, HttpApp, HttpServerRequest } from "@effect/platform"
import { Chunk, Effect, Layer, Option } from "effect"
import { Metrics } from "../status/Metrics.js"
import { segmentsMatch } from "./ClientErrors.js"

/**
 * Request counts and latencies per route template and status, for /metrics: an HttpApi-level
 * middleware. The label is the template of the route the router takes (`/trades/latest`), never the
 * raw URL, so the number of series stays bounded; a request no route takes is `unmatched`.
 */

export const UNMATCHED_ROUTE = "unmatched"

/** Methods kept as they are; anything else is `other` (Node accepts a few dozen). */
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])

interface RouteShape {
  readonly method: string
  readonly path: string
}

/**
 * The route template a request path falls under, matched as the router matches it (find-my-way with
 * its defaults: any case, duplicate and trailing slashes ignored, percent-decoded). Static paths are
 * one map lookup; templates with `:param` or `*` segments are tried in order after them.
 */
export const makeRouteMatcher = (routes: Iterable<RouteShape>) => {
  const exact = new Map<string, string>()
  const patterns: Array<{ readonly segments: ReadonlyArray<string>; readonly template: string }> = []
  for (const { path } of routes) {
    if (path.includes(":") || path.includes("*")) patterns.push({ segments: path.toLowerCase().split("/"), template: path })
    else if (!exact.has(normalize(path))) exact.set(normalize(path), path)
  }
  return (url: string): string => {
    const path = normalize(url)
    const found = exact.get(path)
    if (found !== undefined || patterns.length === 0) return found ?? UNMATCHED_ROUTE
    const got = path.split("/")
    for (const { segments, template } of patterns) if (segmentsMatch(segments, got)) return template
    return UNMATCHED_ROUTE
  }
}

/** The request path as the router matches it; the common case (a clean path) allocates only its lower-case copy. */
const normalize = (url: string): string => {
  let end = url.length
  for (let i = 0; i < url.length; i++) {
    const c = url.charCodeAt(i)
    if (c === 63 /* ? */ || c === 35 /* # */) {
      end = i
      break
    }
  }
  let path = end === url.length ? url : url.slice(0, end)
  if (path.includes("//")) path = path.replace(/\/{2,}/g, "/")
  if (path.includes("%")) {
    try {
      path = decodeURIComponent(path)
    } catch {
      // left as sent: it matches no route either way
    }
  }
  if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1)
  return path.toLowerCase()
}

type Labels = Readonly<Record<"method" | "route" | "status", string>>

/** The label objects of each (route, method, status) seen, made once each: prom-client then only hashes them. */
const makeLabelCache = () => {
  const byRoute = new Map<string, Map<string, Map<number, Labels>>>()
  return (route: string, method: string, status: number): Labels => {
    let byMethod = byRoute.get(route)
    if (byMethod === undefined) byRoute.set(route, (byMethod = new Map()))
    let byStatus = byMethod.get(method)
    if (byStatus === undefined) byMethod.set(method, (byStatus = new Map()))
    let labels = byStatus.get(status)
    if (labels === undefined) byStatus.set(status, (labels = { method, route, status: String(status) }))
    return labels
  }
}

/**
 * The middleware over `routes` (read at the first request, when every route is in the router). The
 * status is the one sent: it is read in a pre-response handler, after failures became responses;
 * the time is up to the response head (a stream's body may go on).
 */
export const makeHttpMetricsMiddleware = (metrics: Metrics, routes: Effect.Effect<Iterable<RouteShape>>) => {
  let routeOf: ((url: string) => string) | undefined
  const labelsOf = makeLabelCache()
  const { httpDuration, httpRequests } = metrics
  return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const started = performance.now()
      routeOf ??= makeRouteMatcher(yield* routes)
      const match = routeOf
      yield* HttpApp.appendPreResponseHandler((_, response) =>
        Effect.sync(() => {
          const method = METHODS.has(request.method) ? request.method : "other"
          const labels = labelsOf(match(request.url), method, response.status)
          httpRequests.inc(labels, 1)
          httpDuration.observe(labels, (performance.now() - started) / 1000)
          return response
        })
      )
      return yield* app
    })
}

/** Wired into the API server (api/Http.ts); without a Metrics service in the process it does nothing. */
export const HttpMetricsLive: Layer.Layer<never> = HttpApiBuilder.middleware(
  Effect.gen(function* () {
    const metrics = yield* Effect.serviceOption(Metrics)
    if (Option.isNone(metrics)) return <E, R>(app: HttpApp.Default<E, R>) => app
    const router = yield* HttpApiBuilder.Router
    return makeHttpMetricsMiddleware(metrics.value, Effect.map(router.router, (r) => Chunk.toReadonlyArray(r.routes)))
  })
).pipe(Layer.provide(HttpApiBuilder.Router.Live))
