import { HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Option } from "effect"
import { createHash } from "node:crypto"
import { UNAUTHORIZED_HEADERS } from "./keys.js"
import { DASHBOARD_PATHS, isPublicPath, pathOf, type SecuritySettings, SWAGGER_PATH } from "./settings.js"

/**
 * The headers every response carries (SECURITY.md, "Clickjacking, MIME sniffing, script injection"),
 * the Swagger UI page's and the dashboard's own CSPs, and the cache rule for keyed answers.
 */

/** The CSP of every response but the Swagger UI page: an API answer loads nothing and is never framed. */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'"

/** The headers every response gets whatever the request (CSP aside: see `API_CSP` and `swaggerCsp`). */
export const securityHeaders = (settings: Pick<SecuritySettings, "hsts">): Record<string, string> => ({
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-resource-policy": "same-site",
  ...(settings.hsts ? { "strict-transport-security": "max-age=31536000; includeSubDomains" } : {})
})

const swaggerCspCache = new WeakMap<object, string>()

const swaggerPolicy = (scriptSrc: string) =>
  `default-src 'none'; script-src ${scriptSrc}; style-src 'unsafe-inline'; img-src 'self' data: blob:; ` +
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

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

/** The policies `dashboardCsp` made: a dashboard response that carries one of them keeps it. */
const dashboardPolicies = new Set<string>()

/**
 * The dashboard page's CSP: its own script and stylesheet (from 'self', no inline script at all), the
 * inline styles its chart library injects, allowed by hash (`styleHashes`: `sha256-…` sources, from the
 * build), same-origin data calls (the API and its stream), data: images; nothing else, never framed.
 * The page's response carries it, and `headersMiddleware` keeps it there (on the dashboard's paths only).
 */
export const dashboardCsp = (styleHashes: ReadonlyArray<string>): string => {
  const styles = ["'self'", ...styleHashes.map((h) => `'${h}'`)].join(" ")
  const policy =
    `default-src 'none'; script-src 'self'; style-src ${styles}; img-src 'self' data:; connect-src 'self'; ` +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
  dashboardPolicies.add(policy)
  return policy
}

/**
 * The CSP a response gets: the Swagger UI page's, the dashboard's own (as its handler set it, on a 304
 * too: a browser revalidating the page replaces its stored headers with the 304's), or `API_CSP`.
 */
const policyFor = (path: string, response: HttpServerResponse.HttpServerResponse): string => {
  if (path === SWAGGER_PATH && response.status === 200) return swaggerCsp(response)
  const own = response.headers["content-security-policy"]
  const dashboard = (response.status === 200 || response.status === 304) && DASHBOARD_PATHS.includes(path)
  return dashboard && own !== undefined && dashboardPolicies.has(own) ? own : API_CSP
}

/**
 * Puts the security headers on every response the app gives, its failures' included (404, 405, 400,
 * 401, 429, a CORS preflight). A 401 also says how to authenticate and is never cached. Behind API
 * keys, `cache-control: public` (the BI CSVs) becomes `private` on every keyed path: a shared cache
 * (CDN, proxy) would otherwise hand keyed data to clients without a key.
 */
export const headersMiddleware = (settings: SecuritySettings) => {
  const base = securityHeaders(settings)
  const keyed = Option.isSome(settings.apiKeys)
  const stamp = (path: string) => (response: HttpServerResponse.HttpServerResponse) => {
    let out = HttpServerResponse.setHeaders(response, {
      ...base,
      "content-security-policy": policyFor(path, response)
    })
    if (out.status === 401) return HttpServerResponse.setHeaders(out, UNAUTHORIZED_HEADERS)
    const caching = out.headers["cache-control"]
    if (keyed && caching !== undefined && /\bpublic\b/i.test(caching) && !isPublicPath(settings, path)) {
      out = HttpServerResponse.setHeader(out, "cache-control", caching.replace(/\bpublic\b/gi, "private"))
    }
    return out
  }
  return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const finish = stamp(pathOf(request.url))
      return Effect.zipRight(
        HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(finish(response))),
        app
      )
    })
}
