import { HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Clock, Effect, Option } from "effect"
import { isIP, isIPv6 } from "node:net"
import { HEALTH_PATHS, pathOf, type RateLimitSettings } from "./settings.js"

/**
 * Per-client rate limiting: a token bucket per client, in memory that stays bounded however many
 * clients appear, and the middleware that spends a token per request (health paths excepted).
 */

/** Most clients the rate limiter tracks at once; the least recently seen is forgotten first. */
export const MAX_TRACKED_CLIENTS = 10_000

export interface RateDecision {
  readonly allowed: boolean
  /** The bucket size (RATE_LIMIT_BURST), sent as x-ratelimit-limit. */
  readonly limit: number
  /** Whole tokens left after this request, sent as x-ratelimit-remaining. */
  readonly remaining: number
  /** When refused: whole seconds until a token is available, at least 1; 0 when allowed. */
  readonly retryAfterSeconds: number
}

export interface RateLimiter {
  readonly settings: RateLimitSettings
  /** Takes one token from `client`'s bucket, by the Effect Clock. */
  readonly take: (client: string) => Effect.Effect<RateDecision>
  /** Buckets held now (for tests and metrics). */
  readonly tracked: Effect.Effect<number>
}

/**
 * One token bucket per client. The map is kept in least-recently-seen order: buckets idle long enough
 * to be full again are dropped from its front (a fresh bucket is identical), and past `maxClients` the
 * least recently seen is dropped, so it never holds more than `maxClients` buckets whatever the number
 * of clients. Each take costs O(1) amortised.
 */
export const makeRateLimiter = (settings: RateLimitSettings, maxClients = MAX_TRACKED_CLIENTS): Effect.Effect<RateLimiter> =>
  Effect.sync(() => {
    const buckets = new Map<string, { tokens: number; at: number }>()
    const perMs = settings.perMinute / 60_000
    const refillMs = settings.burst / perMs
    const take = (client: string, now: number): RateDecision => {
      for (const [key, bucket] of buckets) {
        if (now - bucket.at < refillMs) break
        buckets.delete(key)
      }
      const prev = buckets.get(client)
      let tokens =
        prev === undefined ? settings.burst : Math.min(settings.burst, prev.tokens + Math.max(0, now - prev.at) * perMs)
      buckets.delete(client)
      const allowed = tokens >= 1
      if (allowed) tokens -= 1
      buckets.set(client, { tokens, at: now })
      if (buckets.size > maxClients) buckets.delete(buckets.keys().next().value!)
      return {
        allowed,
        limit: settings.burst,
        remaining: Math.floor(tokens),
        retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((1 - tokens) / perMs / 1000))
      }
    }
    return {
      settings,
      take: (client) => Effect.map(Clock.currentTimeMillis, (now) => take(client, now)),
      tracked: Effect.sync(() => buckets.size)
    }
  })

/** An IPv6 client usually owns a whole /64, so it is limited as one; IPv4-mapped addresses as IPv4. */
const normaliseAddress = (raw: string): string => {
  let address = raw.trim()
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address)
  if (bracketed) address = bracketed[1]!
  else if (/^[\d.]+:\d+$/.test(address)) address = address.slice(0, address.lastIndexOf(":"))
  address = address.replace(/%.*$/, "")
  if (/^::ffff:[\d.]+$/i.test(address)) address = address.slice("::ffff:".length)
  if (isIPv6(address)) {
    const [head = "", tail = ""] = address.toLowerCase().split("::")
    const left = head === "" ? [] : head.split(":")
    const right = address.includes("::") ? (tail === "" ? [] : tail.split(":")) : []
    const groups = address.includes("::") ? [...left, ...Array(8 - left.length - right.length).fill("0"), ...right] : left
    return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":")}::/64`
  }
  return isIP(address) === 4 ? address : address.slice(0, 100)
}

/**
 * The address a request comes from. With `trustProxy` = n, the n-th x-forwarded-for entry from the
 * right: the one the outermost trusted proxy saw. Entries further left are written by the client and
 * are never believed (taking the first entry would let anyone pick a fresh bucket per request).
 */
export const clientAddress = (request: HttpServerRequest.HttpServerRequest, trustProxy: number): string => {
  const socket = Option.getOrElse(request.remoteAddress, () => "unknown")
  const forwarded = request.headers["x-forwarded-for"]
  if (trustProxy === 0 || forwarded === undefined) return normaliseAddress(socket)
  const chain = [...forwarded.split(",").map((s) => s.trim()).filter((s) => s.length > 0), socket]
  return normaliseAddress(chain[Math.max(0, chain.length - 1 - trustProxy)]!)
}

const rateHeaders = (decision: RateDecision) => ({
  "x-ratelimit-limit": String(decision.limit),
  "x-ratelimit-remaining": String(decision.remaining)
})

/**
 * Spends one of the client's tokens per request (never on the health paths): over the limit the answer
 * is a 429 with Retry-After, and every limited answer, whatever its status, carries the x-ratelimit
 * headers. `identify` names the client a request counts for.
 */
export const rateLimitMiddleware =
  (limiter: RateLimiter, identify: (request: HttpServerRequest.HttpServerRequest) => string) =>
  <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      if (HEALTH_PATHS.includes(pathOf(request.url))) return yield* app
      const decision = yield* limiter.take(identify(request))
      if (!decision.allowed) {
        return HttpServerResponse.unsafeJson(
          {
            error: "TooManyRequests",
            message: `rate limit exceeded (${decision.limit} requests at once, refilled at ${limiter.settings.perMinute} per minute): retry in ${decision.retryAfterSeconds} s`
          },
          {
            status: 429,
            headers: { "cache-control": "no-store", "retry-after": String(decision.retryAfterSeconds), ...rateHeaders(decision) }
          }
        )
      }
      yield* HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(HttpServerResponse.setHeaders(response, rateHeaders(decision))))
      return yield* app
    })
