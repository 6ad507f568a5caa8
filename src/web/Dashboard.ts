import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, type Layer } from "effect"
import { createHash } from "node:crypto"
import { gzipSync } from "node:zlib"
import { dashboardCsp } from "../api/security/headers.js"
import { etagMatches } from "../api/TradesHttp.js"
import { loadPageAssets, type PageAssets } from "./assets.js"

/**
 * The dashboard: the page at `/` and its script and stylesheet under `/assets/`, added to the API's
 * router (as `HttpApiSwagger.layer` adds /docs). The browser code lives in `src/web/page/`; the build
 * bundles it and embeds the texts into dist/main.js (`./assets.ts`), so nothing is read from disk and
 * nothing comes from a CDN.
 *
 * - The page and its assets carry no data and are served without a key (`DASHBOARD_PATHS` in
 *   security/settings.ts); the page asks for a key when the API wants one and sends it on each call.
 * - The page has its own CSP (`dashboardCsp`): its script and stylesheet from 'self' and nothing inline
 *   but the chart library's attribution style, allowed by hash.
 * - Caching: every answer has a strong ETag (a matching If-None-Match gets a 304). The page is
 *   revalidated on each load (`no-cache`); it names its assets with `?v=<hash>`, and an asset asked
 *   for with the current hash may be kept for a year (`immutable`). Gzipped when the client accepts it.
 */

/** The paths served (the same list as `DASHBOARD_PATHS`, which lets them through the key gate). */
export const DASHBOARD_PAGE = "/"
export const DASHBOARD_SCRIPT = "/assets/dashboard.js"
export const DASHBOARD_STYLES = "/assets/dashboard.css"

interface Served {
  readonly body: Uint8Array
  readonly gzip: Uint8Array
  readonly etag: string
  readonly version: string
  readonly contentType: string
}

const served = (text: string, contentType: string): Served => {
  const body = new TextEncoder().encode(text)
  const digest = createHash("sha256").update(body).digest("base64url")
  return { body, gzip: gzipSync(body, { level: 9 }), etag: `"${digest.slice(0, 32)}"`, version: digest.slice(0, 16), contentType }
}

const escapeAttribute = (text: string) => text.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;")

/** The page: a static skeleton the script fills in. No inline script or style (the CSP allows none). */
const pageHtml = (script: Served, styles: Served) => `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Dashboard - crypto-streaming-platform</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${escapeAttribute(`${DASHBOARD_STYLES}?v=${styles.version}`)}">
<script defer src="${escapeAttribute(`${DASHBOARD_SCRIPT}?v=${script.version}`)}"></script>
</head>
<body>
<header class="top">
  <h1>crypto-streaming-platform</h1>
  <span id="live-mode" class="badge" title="How the page gets new events">starting</span>
  <span id="overall" class="badge" title="GET /health">health: ?</span>
  <span class="spacer"></span>
  <button id="key-button" type="button" hidden>API key</button>
</header>
<section id="key-panel" class="panel key-panel" hidden>
  <h2>API key</h2>
  <p id="key-message">This server wants an API key (sent in the x-api-key header). It is kept in this browser only.</p>
  <form id="key-form" autocomplete="off">
    <input id="api-key" name="api-key" type="password" placeholder="API key" spellcheck="false" autocomplete="off" required>
    <button type="submit">Use key</button>
    <button id="key-forget" type="button">Forget key</button>
  </form>
</section>
<main>
  <section class="panel prices">
    <h2>Prices</h2>
    <table id="prices">
      <thead><tr><th>Symbol</th><th class="num">Last price</th><th class="num">24 h change</th><th class="num">Trades/min</th><th class="num">Newest event</th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="prices-note" class="note"></p>
  </section>
  <section class="panel chart-panel">
    <div class="chart-head">
      <h2>Candles</h2>
      <select id="symbol" aria-label="Symbol"></select>
      <div id="intervals" class="segmented" role="group" aria-label="Interval">
        <button type="button" data-interval="1m">1m</button><button type="button" data-interval="5m">5m</button><button type="button" data-interval="1h">1h</button><button type="button" data-interval="1d">1d</button>
      </div>
      <span id="chart-status" class="note"></span>
    </div>
    <div id="chart" class="chart"></div>
  </section>
  <section class="panel coverage">
    <h2>Coverage today <span class="note">(GET /coverage?days=1)</span></h2>
    <div id="coverage"></div>
  </section>
  <section class="panel pipeline">
    <h2>Pipeline <span class="note">(GET /health)</span></h2>
    <div id="pipeline"></div>
  </section>
</main>
<footer>
  Charts by <a href="https://www.tradingview.com/" target="_blank" rel="noopener noreferrer">TradingView</a> Lightweight Charts&trade;
  (Apache-2.0), served by this app. API: <a href="/docs">/docs</a>, <a href="/openapi.json">/openapi.json</a>.
</footer>
</body>
</html>
`

interface Prepared {
  readonly page: Served
  readonly script: Served
  readonly styles: Served
  readonly csp: string
}

const prepare = (assets: PageAssets): Prepared => {
  const script = served(assets.js, "text/javascript; charset=utf-8")
  const styles = served(assets.css, "text/css; charset=utf-8")
  return { script, styles, page: served(pageHtml(script, styles), "text/html; charset=utf-8"), csp: dashboardCsp(assets.styleHashes) }
}

/** Whether an Accept-Encoding header takes gzip (not refused with q=0). */
const acceptsGzip = (header: string | undefined): boolean =>
  header !== undefined &&
  header.split(",").some((part) => {
    const [coding = "", ...params] = part.trim().toLowerCase().split(";")
    if (coding.trim() !== "gzip" && coding.trim() !== "*") return false
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="))
    return q === undefined || Number(q.slice(2)) > 0
  })

const queryParam = (url: string, name: string): string | null => {
  const at = url.indexOf("?")
  return at === -1 ? null : new URLSearchParams(url.slice(at + 1)).get(name)
}

/** The gzipped variant's ETag: a representation of its own (RFC 9110, 8.8.3), as nginx and Apache do it. */
const gzipEtag = (etag: string) => `${etag.slice(0, -1)}-gzip"`

const respond = (file: Served, cacheControl: string, extra: Record<string, string> = {}) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
    const gzip = acceptsGzip(request.headers["accept-encoding"])
    const etag = gzip ? gzipEtag(file.etag) : file.etag
    const headers = { etag, "cache-control": cacheControl, vary: "Accept-Encoding", ...extra }
    const ifNoneMatch = request.headers["if-none-match"]
    if (etagMatches(ifNoneMatch, file.etag) || etagMatches(ifNoneMatch, gzipEtag(file.etag))) {
      return HttpServerResponse.empty({ status: 304, headers })
    }
    return HttpServerResponse.uint8Array(gzip ? file.gzip : file.body, {
      contentType: file.contentType,
      headers: gzip ? { ...headers, "content-encoding": "gzip" } : headers
    })
  })

/** An asset: kept for a year when asked for by its current version, revalidated otherwise. */
const asset = (file: Served) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    respond(file, queryParam(request.url, "v") === file.version ? "public, max-age=31536000, immutable" : "no-cache")
  )

export const DashboardLive: Layer.Layer<never> = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    // built on first use (run from source, that bundles the page: only the tests that ask pay for it)
    const prepared = yield* Effect.cached(Effect.map(Effect.promise(loadPageAssets), prepare))
    yield* router.get(
      DASHBOARD_PAGE,
      Effect.flatMap(prepared, ({ csp, page }) => respond(page, "no-cache", { "content-security-policy": csp }))
    )
    yield* router.get(DASHBOARD_SCRIPT, Effect.flatMap(prepared, ({ script }) => asset(script)))
    yield* router.get(DASHBOARD_STYLES, Effect.flatMap(prepared, ({ styles }) => asset(styles)))
  })
)
