import { HttpApp, HttpMiddleware, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { API_KEY_HEADER } from "./keys.js"

/**
 * CORS for the origins in CORS_ORIGINS, by the platform's own `HttpMiddleware.cors` (what
 * `HttpApiBuilder.middlewareCors` installs), applied only to requests from an allowed origin. Used on
 * every request, the platform's middleware would answer any OPTIONS with 204 and send
 * `access-control-expose-headers` (and, with one origin configured, that origin) to every client;
 * SECURITY.md promises no CORS headers at all to other origins, and the key check for an OPTIONS
 * that is not a preflight.
 */

/** Headers browser scripts may read: caching, paging (/trades/range), rate limiting. */
const EXPOSED_HEADERS = ["ETag", "Link", "x-next-cursor", "Retry-After", "x-ratelimit-limit", "x-ratelimit-remaining"]
// last-event-id: a cross-origin /stream client resumes with it (it is not CORS-safelisted)
const ALLOWED_HEADERS = [API_KEY_HEADER, "content-type", "if-none-match", "last-event-id"]

const varyOrigin = (response: HttpServerResponse.HttpServerResponse) => {
  const current = response.headers["vary"]
  if (current === undefined || current.trim() === "") return HttpServerResponse.setHeader(response, "vary", "Origin")
  const fields = current.split(",").map((s) => s.trim().toLowerCase())
  return fields.includes("*") || fields.includes("origin") ? response : HttpServerResponse.setHeader(response, "vary", `${current}, Origin`)
}

/**
 * A preflight from an allowed origin is answered at once with 204, without a key (browsers never send
 * one on a preflight); every other request from it gets `access-control-allow-origin` and the exposed
 * headers. With a list of origins every response varies by Origin, so caches keep the variants apart.
 */
export const corsMiddleware = (origins: "*" | ReadonlyArray<string>) => {
  const cors = HttpMiddleware.cors({
    allowedOrigins: origins === "*" ? [] : origins,
    allowedMethods: ["GET", "HEAD", "OPTIONS"],
    // one entry each: the platform joins entries with "," and these read as SECURITY.md lists them
    allowedHeaders: [ALLOWED_HEADERS.join(", ")],
    exposedHeaders: [EXPOSED_HEADERS.join(", ")],
    maxAge: 600
  })
  const isAllowed = (origin: string | undefined) => origin !== undefined && (origins === "*" || origins.includes(origin))
  const vary = origins === "*" ? undefined : HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(varyOrigin(response)))
  return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> => {
    const withCors = cors(app)
    const other = vary === undefined ? app : Effect.zipRight(vary, app)
    return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      isAllowed(request.headers["origin"]) &&
      (request.method !== "OPTIONS" || request.headers["access-control-request-method"] !== undefined)
        ? withCors
        : other
    )
  }
}
