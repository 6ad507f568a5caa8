import { Config, ConfigError, Either, Option, Redacted } from "effect"
import { explained, invalid, wholeNumber } from "../../Config.js"
import { parseApiKeys } from "./keys.js"

/**
 * The API protection settings (SECURITY.md, "Configuration"), read with Effect's own Config readers.
 * Every protection is off when its variable is unset.
 */

/** Health paths (and the Prometheus scrape) stay public and are never rate limited: a refused or throttled probe gets a service restarted. */
export const HEALTH_PATHS: ReadonlyArray<string> = ["/health", "/health/live", "/metrics"]
/** Served without a key only when API_PUBLIC_DOCS=true. */
export const DOCS_PATHS: ReadonlyArray<string> = ["/docs", "/openapi.json"]
/** The Swagger UI page, which gets a CSP that lets its inline script and styles run. */
export const SWAGGER_PATH = "/docs"
/**
 * The dashboard (src/web/Dashboard.ts): the page and its script and stylesheet. Served without a key
 * whatever API_KEYS says: they carry no data (the page asks for a key and sends it on every data call).
 */
export const DASHBOARD_PATHS: ReadonlyArray<string> = ["/", "/assets/dashboard.js", "/assets/dashboard.css"]

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

/** The path of a request URL, without query or fragment. */
export const pathOf = (url: string) => {
  const end = url.search(/[?#]/)
  return end === -1 ? url : url.slice(0, end)
}

/** Served without a key whatever API_KEYS says. */
export const isPublicPath = (settings: SecuritySettings, path: string) =>
  HEALTH_PATHS.includes(path) || DASHBOARD_PATHS.includes(path) || (settings.publicDocs && DOCS_PATHS.includes(path))

/** CORS_ORIGINS: "*" or exact origins (scheme://host[:port], as browsers send them). */
export const parseOrigins = (raw: string): "*" | ReadonlyArray<string> | undefined => {
  const entries = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
  if (entries.length === 0) return undefined
  if (entries.includes("*")) return entries.length === 1 ? "*" : undefined
  const origins: Array<string> = []
  for (const entry of entries) {
    const url = URL.canParse(entry) ? new URL(entry) : undefined
    if (url === undefined || !["http:", "https:"].includes(url.protocol) || url.origin.toLowerCase() !== entry.toLowerCase()) {
      return undefined
    }
    if (!origins.includes(url.origin)) origins.push(url.origin)
  }
  return origins
}

const flag = (name: string, accepted: string) =>
  Config.boolean(name).pipe(explained(name, accepted), Config.withDefault(false))

export const apiKeys = Config.option(
  Config.redacted("API_KEYS").pipe(Config.mapOrFail((keys) => parseApiKeys(Redacted.value(keys))))
)
export const apiPublicDocs = flag("API_PUBLIC_DOCS", "true or false")
export const rateLimitPerMinute = wholeNumber("RATE_LIMIT_PER_MINUTE", 0, 1_000_000).pipe(
  explained("RATE_LIMIT_PER_MINUTE", "a whole number of requests per minute per client such as 120 (0: no rate limit)"),
  Config.withDefault(0)
)
export const rateLimitBurst = Config.option(
  wholeNumber("RATE_LIMIT_BURST", 1, 1_000_000).pipe(
    explained(
      "RATE_LIMIT_BURST",
      "a positive whole number of requests a client may make at once such as 20 (default: RATE_LIMIT_PER_MINUTE)"
    )
  )
)
/** true = one proxy, false = none, or a count. */
export const trustProxy = Config.boolean("TRUST_PROXY").pipe(
  Config.map((trusted) => (trusted ? 1 : 0)),
  Config.orElse(() => wholeNumber("TRUST_PROXY", 0, 10)),
  explained("TRUST_PROXY", "true (one reverse proxy), false, or the number of reverse proxies in front of the API such as 2"),
  Config.withDefault(0)
)
const ORIGINS_ACCEPTED =
  "* or a comma-separated list of origins such as https://app.example.com,http://localhost:3000 " +
  "(scheme, host and port only: no path, no trailing slash)"
export const corsOrigins = Config.option(
  Config.string("CORS_ORIGINS").pipe(
    Config.mapOrFail((raw) => {
      const origins = parseOrigins(raw)
      return origins === undefined ? Either.left(invalid("CORS_ORIGINS", raw, ORIGINS_ACCEPTED)) : Either.right(origins)
    })
  )
)
export const hsts = flag("HSTS", "true or false (true only when clients reach the API over HTTPS)")

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
