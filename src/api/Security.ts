import { HttpApiBuilder, HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Clock, Config, ConfigError, Effect, Either, Layer, Option } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { isIP, isIPv6 } from "node:net"

/**
 * Optional protection for the HTTP API: API keys, per-client rate limiting, CORS and security
 * headers. Every part is off by default (local use) and is switched on from the environment.
 * SECURITY.md describes the threat model and every setting.
 */

// ---------------------------------------------------------------------------------------------
// Settings

/** Reached without a key and never rate limited: platform health checks must not be refused. */
export const HEALTH_PATH = "/health"
/** Health paths stay public and are never rate limited: a throttled probe gets a service restarted. */
export const HEALTH_PATHS: ReadonlyArray<string> = [HEALTH_PATH, "/health/live"]
/** Served without a key only when API_PUBLIC_DOCS=true. */
export const DOCS_PATHS: ReadonlyArray<string> = ["/docs", "/openapi.json"]
/** The Swagger UI page, which gets a CSP that lets its inline script and styles run. */
export const SWAGGER_PATH = "/docs"
/** Most clients the rate limiter tracks at once; the least recently seen is forgotten first. */
export const MAX_TRACKED_CLIENTS = 10_000

export interface RateLimitSettings {
  /** Tokens added to a client's bucket per minute. */
  readonly perMinute: number
  /** Size of the bucket: requests a client may make at once after being idle. */
  readonly burst: number
}

export interface SecuritySettings {
  /** SHA-256 digests of the accepted keys; None: no key is required. */
  readonly apiKeys: Option.Option<ReadonlyArray<Buffer>>
  /** /docs and /openapi.json are served without a key. */
  readonly publicDocs: boolean
  /** None: no rate limit. */
  readonly rateLimit: Option.Option<RateLimitSettings>
  /** Reverse proxies in front of the API whose x-forwarded-for entries are believed; 0: none. */
  readonly trustProxy: number
  /** Allowed browser origins, or "*"; None: no CORS headers at all. */
  readonly corsOrigins: Option.Option<"*" | ReadonlyArray<string>>
  /** Send strict-transport-security (only behind TLS). */
  readonly hsts: boolean
}

/** Every protection off: what an unset environment gives. */
export const openSettings: SecuritySettings = {
  apiKeys: Option.none(),
  publicDocs: false,
  rateLimit: Option.none(),
  trustProxy: 0,
  corsOrigins: Option.none(),
  hsts: false
}

const invalid = (name: string, value: string, accepted: string) =>
  ConfigError.InvalidData([name], `${name}=${JSON.stringify(value)} is not valid: expected ${accepted}.`)

/** A string variable checked by `parse` (undefined: rejected), failing with a message like Config.ts's. */
const checked = <A>(name: string, accepted: string, parse: (raw: string) => A | undefined): Config.Config<A> =>
  Config.string(name).pipe(
    Config.mapOrFail((value) => {
      const parsed = parse(value.trim())
      return parsed === undefined ? Either.left(invalid(name, value, accepted)) : Either.right(parsed)
    })
  )

const booleanValue = (raw: string) => {
  const v = raw.toLowerCase()
  return ["true", "1", "yes", "on"].includes(v) ? true : ["false", "0", "no", "off"].includes(v) ? false : undefined
}
const wholeNumber = (min: number, max: number) => (raw: string) => {
  const n = Number(raw)
  return /^\d+$/.test(raw) && n >= min && n <= max ? n : undefined
}

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest()

const KEYS_ACCEPTED =
  "a comma-separated list of API keys, each either the key itself (at least 16 characters, no spaces or commas; " +
  'e.g. from `openssl rand -hex 32`) or sha256: and the 64 hex digits of its SHA-256 (printf %s "$KEY" | sha256sum)'

/**
 * API_KEYS as SHA-256 digests. A malformed plain key is not echoed back (it is a secret); a malformed
 * sha256: entry is, since it is only a (broken) hash.
 */
export const parseApiKeys = (raw: string): Either.Either<ReadonlyArray<Buffer>, ConfigError.ConfigError> => {
  const entries = raw.split(",").map((s) => s.trim())
  if (entries.every((e) => e.length === 0)) return Either.left(invalid("API_KEYS", raw, KEYS_ACCEPTED))
  const digests: Array<Buffer> = []
  for (const [i, entry] of entries.entries()) {
    if (entry.length === 0) continue
    let digest: Buffer | undefined
    let shown: string
    if (/^sha256:/i.test(entry)) {
      const hex = entry.slice("sha256:".length)
      digest = /^[0-9a-f]{64}$/i.test(hex) ? Buffer.from(hex, "hex") : undefined
      shown = JSON.stringify(entry)
    } else {
      digest = /^[\x21-\x7e]{16,}$/.test(entry) ? sha256(entry) : undefined
      shown = `a ${entry.length}-character key, not shown`
    }
    if (digest === undefined) {
      return Either.left(
        ConfigError.InvalidData(["API_KEYS"], `API_KEYS entry ${i + 1} (${shown}) is not valid: expected ${KEYS_ACCEPTED}.`)
      )
    }
    if (!digests.some((d) => d.equals(digest))) digests.push(digest)
  }
  return Either.right(digests)
}

/** CORS_ORIGINS: "*" or exact origins (scheme://host[:port], as browsers send them). */
export const parseOrigins = (raw: string): "*" | ReadonlyArray<string> | undefined => {
  const entries = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
  if (entries.length === 0) return undefined
  if (entries.includes("*")) return entries.length === 1 ? "*" : undefined
  const origins: Array<string> = []
  for (const entry of entries) {
    let url: URL
    try {
      url = new URL(entry)
    } catch {
      return undefined
    }
    if (!["http:", "https:"].includes(url.protocol) || url.origin.toLowerCase() !== entry.toLowerCase()) return undefined
    if (!origins.includes(url.origin)) origins.push(url.origin)
  }
  return origins
}

export const apiKeys = Config.option(Config.string("API_KEYS").pipe(Config.mapOrFail(parseApiKeys)))
export const apiPublicDocs = checked("API_PUBLIC_DOCS", "true or false", booleanValue).pipe(Config.withDefault(false))
export const rateLimitPerMinute = checked(
  "RATE_LIMIT_PER_MINUTE",
  "a whole number of requests per minute per client such as 120 (0: no rate limit)",
  wholeNumber(0, 1_000_000)
).pipe(Config.withDefault(0))
export const rateLimitBurst = Config.option(
  checked(
    "RATE_LIMIT_BURST",
    "a positive whole number of requests a client may make at once such as 20 (default: RATE_LIMIT_PER_MINUTE)",
    wholeNumber(1, 1_000_000)
  )
)
export const trustProxy = checked(
  "TRUST_PROXY",
  "true (one reverse proxy), false, or the number of reverse proxies in front of the API such as 2",
  (raw) => {
    const flag = booleanValue(raw)
    return flag === undefined ? wholeNumber(0, 10)(raw) : flag ? 1 : 0
  }
).pipe(Config.withDefault(0))
export const corsOrigins = Config.option(
  checked(
    "CORS_ORIGINS",
    "* or a comma-separated list of origins such as https://app.example.com,http://localhost:3000 " +
      "(scheme, host and port only: no path, no trailing slash)",
    parseOrigins
  )
)
export const hsts = checked("HSTS", "true or false (true only when clients reach the API over HTTPS)", booleanValue).pipe(
  Config.withDefault(false)
)

/** Every API protection setting, validated; a bad value fails naming the variable, the value and what is accepted. */
export const SecurityConfig: Config.Config<SecuritySettings> = Config.all({
  apiKeys,
  publicDocs: apiPublicDocs,
  perMinute: rateLimitPerMinute,
  burst: rateLimitBurst,
  trustProxy,
  corsOrigins,
  hsts
}).pipe(
  Config.mapOrFail(({ burst, perMinute, ...rest }) =>
    perMinute === 0 && Option.isSome(burst)
      ? Either.left(
          ConfigError.InvalidData(
            ["RATE_LIMIT_BURST"],
            `RATE_LIMIT_BURST=${burst.value} is set but RATE_LIMIT_PER_MINUTE is unset or 0, so there is no rate limit: ` +
              "set RATE_LIMIT_PER_MINUTE too, or remove RATE_LIMIT_BURST."
          )
        )
      : Either.right<SecuritySettings>({
          ...rest,
          rateLimit: perMinute === 0 ? Option.none() : Option.some({ perMinute, burst: Option.getOrElse(burst, () => perMinute) })
        })
  )
)

// ---------------------------------------------------------------------------------------------
// Rate limiting

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
  /** Takes one token from `client`'s bucket, by the Effect Clock. */
  readonly take: (client: string) => Effect.Effect<RateDecision>
  /** Buckets held now (for tests and metrics). */
  readonly tracked: Effect.Effect<number>
}

/**
 * One token bucket per client. The map is kept in least-recently-seen order: buckets idle long enough
 * to be full again are dropped (a fresh bucket is identical), and past `maxClients` the least recently
 * seen is dropped, so memory stays bounded whatever the number of clients.
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

// ---------------------------------------------------------------------------------------------
// Headers

/** The CSP of every response but the Swagger UI page: an API answer loads nothing and is never framed. */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'"
/** Headers browser scripts may read: caching, paging (/trades/range), rate limiting. */
const EXPOSED_HEADERS = "ETag, Link, x-next-cursor, Retry-After, x-ratelimit-limit, x-ratelimit-remaining"
const ALLOWED_METHODS = "GET, HEAD, OPTIONS"
const ALLOWED_HEADERS = "x-api-key, content-type, if-none-match"

const swaggerCspCache = new WeakMap<object, string>()

/**
 * The Swagger UI page HttpApiSwagger serves is self-contained: one inline <style>, one inline bundled
 * <script> (no CDN) and the spec in a JSON data block. Its CSP allows exactly that script, by the
 * SHA-256 of the text served (so it follows upgrades of @effect/platform), inline styles, data:/blob:
 * images and same-origin fetches for "Try it out"; nothing else.
 */
export const swaggerCsp = (response: HttpServerResponse.HttpServerResponse): string => {
  const body = response.body
  if (body._tag !== "Uint8Array") return swaggerPolicy("'unsafe-inline'")
  const cached = swaggerCspCache.get(body.body)
  if (cached !== undefined) return cached
  const html = Buffer.from(body.body).toString("utf8")
  const hashes: Array<string> = []
  for (const match of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script\s*>/gi)) {
    const type = /\btype\s*=\s*["']?([^"'\s>]+)/i.exec(match[1] ?? "")?.[1]?.toLowerCase()
    if (type !== undefined && !["text/javascript", "application/javascript", "module"].includes(type)) continue
    hashes.push(`'sha256-${createHash("sha256").update(match[2] ?? "", "utf8").digest("base64")}'`)
  }
  const policy = swaggerPolicy(hashes.length > 0 ? hashes.join(" ") : "'unsafe-inline'")
  swaggerCspCache.set(body.body, policy)
  return policy
}
const swaggerPolicy = (scriptSrc: string) =>
  `default-src 'none'; script-src ${scriptSrc}; style-src 'unsafe-inline'; img-src 'self' data: blob:; ` +
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const withVary = (response: HttpServerResponse.HttpServerResponse, field: string) => {
  const current = response.headers["vary"]
  if (current === undefined || current.trim() === "") return HttpServerResponse.setHeader(response, "vary", field)
  const fields = current.split(",").map((s) => s.trim().toLowerCase())
  return fields.includes("*") || fields.includes(field.toLowerCase())
    ? response
    : HttpServerResponse.setHeader(response, "vary", `${current}, ${field}`)
}

// ---------------------------------------------------------------------------------------------
// Middleware

/** Wraps an HttpApp; keeps its error and requirement types. */
/** The headers every response gets whatever the request (CSP aside: see `API_CSP` and `swaggerCsp`). */
export const securityHeaders = (settings: SecuritySettings): Record<string, string> => ({
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-resource-policy": "same-site",
  ...(settings.hsts ? { "strict-transport-security": "max-age=31536000; includeSubDomains" } : {})
})

/**
 * The headers of an API (non-docs) response when no setting needs a per-request decision, or
 * undefined when one does (API keys, rate limits or CORS): then every request must go through the
 * middleware.
 */
export const staticApiHeaders = (settings: SecuritySettings): Record<string, string> | undefined =>
  Option.isNone(settings.apiKeys) && Option.isNone(settings.rateLimit) && Option.isNone(settings.corsOrigins)
    ? { ...securityHeaders(settings), "content-security-policy": API_CSP }
    : undefined

export type SecurityMiddleware = <E, R>(app: HttpApp.Default<E, R>) => HttpApp.Default<E, R>

const pathOf = (url: string) => {
  const end = url.search(/[?#]/)
  return end === -1 ? url : url.slice(0, end)
}

/**
 * The middleware for `settings`, with its own rate-limit state. Order per request: CORS preflight
 * (answered at once, no key needed: browsers never send one), rate limit (so failed key guesses are
 * throttled too), API key, then the app. Every response, the app's and its failures' included, gets
 * the security headers; the middleware's own answers (204, 401, 429) get them directly.
 */
export const makeSecurityMiddleware = (settings: SecuritySettings): Effect.Effect<SecurityMiddleware> =>
  Effect.gen(function* () {
    const rateLimit = Option.getOrUndefined(settings.rateLimit)
    const limiter = rateLimit === undefined ? undefined : yield* makeRateLimiter(rateLimit)
    const digests = Option.getOrUndefined(settings.apiKeys)
    const origins = Option.getOrUndefined(settings.corsOrigins)

    const baseHeaders = securityHeaders(settings)

    /** Index of the accepted key `presented` matches, -1 if none; compares digests in constant time, all of them. */
    const matchKey = (presented: string | undefined): number => {
      if (digests === undefined || presented === undefined) return -1
      const digest = sha256(presented)
      let found = -1
      digests.forEach((accepted, i) => {
        if (timingSafeEqual(digest, accepted) && found === -1) found = i
      })
      return found
    }

    const isPublic = (path: string) => HEALTH_PATHS.includes(path) || (settings.publicDocs && DOCS_PATHS.includes(path))

    const corsHeaders = (origin: string | undefined): Record<string, string> | undefined => {
      if (origins === undefined || origin === undefined) return undefined
      if (origins === "*") return { "access-control-allow-origin": "*", "access-control-expose-headers": EXPOSED_HEADERS }
      return origins.includes(origin)
        ? { "access-control-allow-origin": origin, "access-control-expose-headers": EXPOSED_HEADERS }
        : undefined
    }

    /**
     * The headers every response gets. Behind API keys, `cache-control: public` (the BI CSVs) becomes
     * `private`: a shared cache (CDN, proxy) would otherwise hand keyed data to clients without a key.
     */
    const finish = (
      response: HttpServerResponse.HttpServerResponse,
      path: string,
      cors: Record<string, string> | undefined,
      rate: RateDecision | undefined
    ) => {
      let out = HttpServerResponse.setHeaders(response, {
        ...baseHeaders,
        "content-security-policy": path === SWAGGER_PATH && response.status === 200 ? swaggerCsp(response) : API_CSP,
        ...cors,
        ...(rate === undefined
          ? {}
          : { "x-ratelimit-limit": String(rate.limit), "x-ratelimit-remaining": String(rate.remaining) })
      })
      if (origins !== undefined && origins !== "*") out = withVary(out, "Origin")
      const caching = out.headers["cache-control"]
      if (digests !== undefined && !isPublic(path) && caching !== undefined && /\bpublic\b/i.test(caching)) {
        out = HttpServerResponse.setHeader(out, "cache-control", caching.replace(/\bpublic\b/gi, "private"))
      }
      return out
    }

    const refuse = (status: 401 | 429, error: string, message: string, headers: Record<string, string>) =>
      HttpServerResponse.unsafeJson({ error, message }, { status, headers: { "cache-control": "no-store", ...headers } })

    return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const path = pathOf(request.url)
        const cors = corsHeaders(request.headers["origin"])

        if (cors !== undefined && request.method === "OPTIONS" && request.headers["access-control-request-method"] !== undefined) {
          const preflight = HttpServerResponse.empty({
            status: 204,
            headers: {
              "access-control-allow-methods": ALLOWED_METHODS,
              "access-control-allow-headers": ALLOWED_HEADERS,
              "access-control-max-age": "600"
            }
          })
          return finish(preflight, path, cors, undefined)
        }

        const keyIndex = matchKey(request.headers["x-api-key"])
        let rate: RateDecision | undefined
        if (limiter !== undefined && rateLimit !== undefined && !HEALTH_PATHS.includes(path)) {
          const client = keyIndex >= 0 ? `key:${keyIndex}` : `address:${clientAddress(request, settings.trustProxy)}`
          rate = yield* limiter.take(client)
          if (!rate.allowed) {
            const refused = refuse(
              429,
              "TooManyRequests",
              `rate limit exceeded (${rate.limit} requests at once, refilled at ${rateLimit.perMinute} per minute): retry in ${rate.retryAfterSeconds} s`,
              { "retry-after": String(rate.retryAfterSeconds) }
            )
            return finish(refused, path, cors, rate)
          }
        }

        if (digests !== undefined && keyIndex === -1 && !isPublic(path)) {
          const presented = request.headers["x-api-key"] !== undefined
          const refused = refuse(
            401,
            "Unauthorized",
            presented ? "the API key in the x-api-key header is not valid" : "an API key is required: send it in the x-api-key header",
            { "www-authenticate": 'ApiKey realm="api", header="x-api-key"' }
          )
          return finish(refused, path, cors, rate)
        }

        yield* HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(finish(response, path, cors, rate)))
        return yield* app
      })
  })

/** The middleware configured from the environment (SecurityConfig). */
export const securityMiddleware: Effect.Effect<SecurityMiddleware, ConfigError.ConfigError> = Effect.flatMap(
  SecurityConfig,
  makeSecurityMiddleware
)

/**
 * The protection as an HttpApi-level middleware: provide it to `HttpApiBuilder.serve()` (it runs for
 * every route, Swagger and OpenAPI included, and for unknown routes and decode failures). Fails at
 * start-up with a ConfigError on a bad setting.
 */
export const SecurityLive: Layer.Layer<never, ConfigError.ConfigError> = HttpApiBuilder.middleware(securityMiddleware)
