import { HttpApi, HttpApiBuilder, type HttpApp, HttpServerRequest } from "@effect/platform"
import { Effect, Layer, Option, Redacted } from "effect"
import { allowedMethods, type RouteShape } from "../ClientErrors.js"
import { corsMiddleware } from "./cors.js"
import { headersMiddleware } from "./headers.js"
import { API_KEY_HEADER, ApiKeyAuth, makeKeyMatcher, unauthorized, unauthorizedResponse } from "./keys.js"
import { clientAddress, makeRateLimiter, rateLimitMiddleware } from "./rateLimit.js"
import { isPublicPath, pathOf, SecurityConfig, type SecuritySettings } from "./settings.js"

/**
 * The protection of one server, put together. Per request, outermost first: the security headers
 * (so every answer below gets them), CORS (a preflight is answered here, without a key), the rate
 * limit (before any key check, so wrong guesses spend tokens too), then the key: `ApiKeyAuth` on
 * every HttpApi endpoint that declares it, and `keyGate` for the rest (Swagger UI, the OpenAPI
 * document, unknown paths and methods), which HttpApi middleware never sees.
 */

/** The settings, key matcher and rate-limit buckets of one server, shared by the API-level middleware and `ApiKeyAuth`. */
export class Protection extends Effect.Service<Protection>()("api/Protection", {
  effect: Effect.gen(function* () {
    const settings = yield* SecurityConfig
    const matchKey = makeKeyMatcher(Option.getOrElse(settings.apiKeys, () => []))
    const limiter = Option.isSome(settings.rateLimit) ? Option.some(yield* makeRateLimiter(settings.rateLimit.value)) : Option.none()
    return { settings, matchKey, limiter } as const
  })
}) {}

/** `ApiKeyAuth` for the endpoints: a key from API_KEYS, compared in constant time; anything while API_KEYS is unset. */
export const ApiKeyAuthLive = Layer.effect(
  ApiKeyAuth,
  Effect.map(Protection, ({ matchKey, settings }) =>
    ApiKeyAuth.of({
      apiKey: Option.isNone(settings.apiKeys)
        ? () => Effect.void
        : (key) => {
            const presented = Redacted.value(key)
            return matchKey(presented) >= 0 ? Effect.void : Effect.fail(unauthorized(presented))
          }
    })
  )
).pipe(Layer.provide(Protection.Default))

/** The routes of `api` whose endpoints carry `ApiKeyAuth`. */
const keyedRoutes = (api: HttpApi.HttpApi.Any): ReadonlyArray<RouteShape> => {
  const routes: Array<RouteShape> = []
  HttpApi.reflect(api as HttpApi.HttpApi.AnyWithProps, {
    onGroup: () => {},
    onEndpoint: ({ endpoint, middleware }) => {
      if (middleware.has(ApiKeyAuth as never)) routes.push({ method: endpoint.method, path: endpoint.path })
    }
  })
  return routes
}

/**
 * The key check for requests that reach no `ApiKeyAuth` endpoint: every path but the public ones
 * (health, the dashboard's page and assets; the docs with API_PUBLIC_DOCS=true) needs a valid key, so
 * an unknown path or method answers 401 rather than revealing itself with a 404 or 405. A request
 * for a keyed endpoint (HEAD included, its path matched as the router matches it) is left to that
 * endpoint's `ApiKeyAuth`. A mismatch fails safe: an endpoint request not recognised here is checked
 * twice, and a request wrongly taken for one reaches no handler (the router answers 404 or 405,
 * serving nothing).
 */
const keyGate = (settings: SecuritySettings, matchKey: (presented: string | undefined) => number, routes: ReadonlyArray<RouteShape>) =>
  <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      if (isPublicPath(settings, pathOf(request.url))) return app
      if (request.method !== "OPTIONS" && allowedMethods(routes, request.url).includes(request.method)) return app
      const presented = request.headers[API_KEY_HEADER] ?? ""
      return matchKey(presented) >= 0 ? app : Effect.succeed(unauthorizedResponse(presented))
    })

/**
 * The HttpApi-level middleware for the protection in effect: the API's own endpoints are read from the
 * HttpApi being served, so the key gate knows which requests `ApiKeyAuth` checks.
 */
export const makeSecurityMiddleware = ({ limiter, matchKey, settings }: Protection, routes: ReadonlyArray<RouteShape>) => {
  // innermost first
  const wrappers: Array<<E, R>(app: HttpApp.Default<E, R>) => HttpApp.Default<E, R>> = []
  if (Option.isSome(settings.apiKeys)) wrappers.push(keyGate(settings, matchKey, routes))
  if (Option.isSome(limiter)) {
    const identify = (request: HttpServerRequest.HttpServerRequest) => {
      const key = matchKey(request.headers[API_KEY_HEADER])
      return key >= 0 ? `key:${key}` : `address:${clientAddress(request, settings.trustProxy)}`
    }
    wrappers.push(rateLimitMiddleware(limiter.value, identify))
  }
  if (Option.isSome(settings.corsOrigins)) wrappers.push(corsMiddleware(settings.corsOrigins.value))
  wrappers.push(headersMiddleware(settings))
  return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> => wrappers.reduce((inner, wrap) => wrap(inner), app)
}

/**
 * The protection as an HttpApi-level middleware: provide it to `HttpApiBuilder.serve()` (it runs for
 * every request, Swagger and OpenAPI included, and for unknown routes and decode failures), with
 * `ApiKeyAuthLive` provided to the API's handlers. Fails at start-up with a ConfigError on a bad
 * setting.
 */
export const SecurityLive = HttpApiBuilder.middleware(
  Effect.gen(function* () {
    const protection = yield* Protection
    const { api } = yield* HttpApi.Api
    return makeSecurityMiddleware(protection, keyedRoutes(api))
  })
).pipe(Layer.provide(Protection.Default))
