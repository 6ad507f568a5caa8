import { HttpApiError, type HttpApp, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { maxHeaderSize as defaultMaxHeaderSize, type Server } from "node:http"
import type { Duplex } from "node:stream"
import { API_CSP, securityHeaders } from "./security/headers.js"
import type { SecuritySettings } from "./security/settings.js"

/**
 * The 4xx answers the platform would otherwise give badly: requests Node's HTTP parser rejects
 * (empty 400/431 from Node), paths and methods no route serves (empty 404 from the router), and
 * decode failures (a 400 whose message is a schema dump). All are JSON with a sentence a person can
 * act on, and carry the security headers every response promises.
 */

// ---------------------------------------------------------------------------------------------
// Requests Node's parser rejects

/** How long a rejected connection may stay half-closed so the client reads the answer before it is cut. */
const LINGER_MS = 1000

interface Rejection {
  readonly status: number
  readonly reason: string
  readonly error: string
  readonly message: string
}

/** What to answer a parser error with; statuses follow Node's own default handling. */
const rejectionFor = (error: Error & { readonly code?: unknown; readonly reason?: unknown }, headerLimit: number): Rejection => {
  switch (error.code) {
    case "HPE_HEADER_OVERFLOW":
      return {
        status: 431,
        reason: "Request Header Fields Too Large",
        error: "RequestHeaderFieldsTooLarge",
        message: `the request's headers are larger than the ${Math.floor(headerLimit / 1024)} KB the server accepts in all`
      }
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return {
        status: 413,
        reason: "Content Too Large",
        error: "ContentTooLarge",
        message: "the request's chunk extensions are larger than the server accepts"
      }
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return {
        status: 408,
        reason: "Request Timeout",
        error: "RequestTimeout",
        message: "the request did not arrive in full in time"
      }
    case "HPE_UNEXPECTED_CONTENT_LENGTH":
    case "HPE_INVALID_CONTENT_LENGTH":
    case "HPE_INVALID_TRANSFER_ENCODING":
      return {
        status: 400,
        reason: "Bad Request",
        error: "BadRequest",
        message: "the request's Content-Length or Transfer-Encoding headers are invalid or conflict"
      }
    default: {
      // llhttp's reason is fixed text such as "Invalid method encountered"; never the request's bytes
      const detail = typeof error.reason === "string" && /^[\x20-\x7e]{1,100}$/.test(error.reason) ? `: ${error.reason}` : ""
      return {
        status: 400,
        reason: "Bad Request",
        error: "BadRequest",
        message: `the request is not valid HTTP/1.1${detail}`
      }
    }
  }
}

/** A complete HTTP/1.1 answer, closing the connection, as bytes to write on the socket. */
const rawAnswer = (rejection: Rejection, headers: Record<string, string>): Buffer => {
  const body = JSON.stringify({ error: rejection.error, message: rejection.message })
  const fields = {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(body)),
    "cache-control": "no-store",
    connection: "close",
    date: new Date().toUTCString(),
    ...headers
  }
  const head = Object.entries(fields).map(([name, value]) => `${name}: ${value}\r\n`).join("")
  return Buffer.from(`HTTP/1.1 ${rejection.status} ${rejection.reason}\r\n${head}\r\n${body}`, "latin1")
}

/**
 * Answers requests Node's own parser rejects (bad bytes in the request line or headers, conflicting
 * lengths, headers over the size limit, requests too slow to arrive) through the server's
 * `clientError` hook: a short JSON body with the security headers, then the connection is closed.
 * A connection the client reset, or one already carrying an answer, is only destroyed.
 */
export const installClientErrorHandler = (server: Server, settings: SecuritySettings): Server => {
  const headers = { ...securityHeaders(settings), "content-security-policy": API_CSP }
  const headerLimit = (server as { readonly maxHeaderSize?: number }).maxHeaderSize ?? defaultMaxHeaderSize
  const answered = new WeakSet<Duplex>()
  server.on("clientError", (error: Error & { readonly code?: unknown }, socket: Duplex) => {
    // Node reports every further parse error of a connection: the first answer is the only one.
    if (answered.has(socket)) return
    answered.add(socket)
    // As Node does: never write into a response already under way on this connection.
    const inFlight = (socket as { readonly _httpMessage?: { readonly headersSent?: boolean } | null })._httpMessage
    if (error.code === "ECONNRESET" || !socket.writable || inFlight?.headersSent === true) {
      socket.destroy()
      return
    }
    socket.end(rawAnswer(rejectionFor(error, headerLimit), headers))
    const cut = setTimeout(() => socket.destroy(), LINGER_MS)
    cut.unref()
    socket.once("close", () => clearTimeout(cut))
  })
  return server
}

// ---------------------------------------------------------------------------------------------
// Paths and methods no route serves

/** A route as the router holds it: a method ("*": any) and a path pattern with `:param` and `*` segments. */
export interface RouteShape {
  readonly method: string
  readonly path: string
}

/** The order Allow lists methods in. */
const METHOD_ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

/** The request path as the router matches it: no query, duplicate and trailing slashes dropped, decoded, any case. */
const routablePath = (url: string): string => {
  const end = url.search(/[?#]/)
  let path = (end === -1 ? url : url.slice(0, end)).replace(/\/{2,}/g, "/")
  try {
    path = decodeURI(path)
  } catch {
    // left as sent: it matches no route either way
  }
  if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1)
  return path.toLowerCase()
}

const matches = (pattern: string, path: string): boolean => segmentsMatch(pattern.toLowerCase().split("/"), path.split("/"))

/** Whether a route's path segments (`:param` for one non-empty segment, `*` for the rest) match a path's. */
export const segmentsMatch = (want: ReadonlyArray<string>, got: ReadonlyArray<string>): boolean => {
  for (let i = 0; i < want.length; i++) {
    const segment = want[i]!
    if (segment === "*") return true
    if (i >= got.length) return false
    if (segment.startsWith(":") ? got[i] === "" : segment !== got[i]) return false
  }
  return want.length === got.length
}

/**
 * The methods `url`'s path is served with, as Allow lists them (HEAD wherever GET is, since the
 * router answers HEAD with the GET route; OPTIONS always); empty when no route has the path.
 */
export const allowedMethods = (routes: Iterable<RouteShape>, url: string): ReadonlyArray<string> => {
  const path = routablePath(url)
  const methods = new Set<string>()
  for (const route of routes) if (route.method !== "*" && matches(route.path, path)) methods.add(route.method.toUpperCase())
  if (methods.size === 0) return []
  if (methods.has("GET")) methods.add("HEAD")
  methods.add("OPTIONS")
  const rank = (m: string) => (METHOD_ORDER.includes(m) ? METHOD_ORDER.indexOf(m) : METHOD_ORDER.length)
  return [...methods].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
}

const shown = (url: string) => {
  const end = url.search(/[?#]/)
  const path = end === -1 ? url : url.slice(0, end)
  return path.length > 200 ? `${path.slice(0, 200)}…` : path
}

/**
 * The answer to a request no route took: 404 when no route has its path, 405 with Allow when the path
 * is served with other methods, 204 with Allow for OPTIONS (a CORS preflight is answered earlier, by
 * the security middleware).
 */
export const unroutedResponse = (
  request: HttpServerRequest.HttpServerRequest,
  routes: Iterable<RouteShape>,
  hint = "the endpoints are listed at /openapi.json and /docs"
): HttpServerResponse.HttpServerResponse => {
  const allowed = allowedMethods(routes, request.url)
  if (allowed.length === 0) {
    return HttpServerResponse.unsafeJson(
      { error: "NotFound", message: `no endpoint at ${shown(request.url)}: ${hint}` },
      { status: 404 }
    )
  }
  const allow = allowed.join(", ")
  if (request.method === "OPTIONS") return HttpServerResponse.empty({ status: 204, headers: { allow } })
  return HttpServerResponse.unsafeJson(
    { error: "MethodNotAllowed", message: `${request.method} is not allowed on ${shown(request.url)}: use ${allow}` },
    { status: 405, headers: { allow } }
  )
}

// ---------------------------------------------------------------------------------------------
// Decode failures

type Issue = HttpApiError.HttpApiDecodeError["issues"][number]

const fieldName = (path: ReadonlyArray<PropertyKey>) =>
  path.map((key, i) => (typeof key === "number" ? `[${key}]` : `${i === 0 ? "" : "."}${String(key)}`)).join("")

const typeIssue = /^Expected (.+), actual (.+)$/s

/**
 * The issues of one field as a clause that names it: "limit must be …", "symbol is missing",
 * "start: …". Schema reports a union member by member: a literal union ("Expected \"1m\", actual …",
 * "Expected \"5m\", …") becomes one "expected one of", and an optional parameter's "Expected
 * undefined" alternative is left out.
 */
const clause = (path: ReadonlyArray<PropertyKey>, issues: ReadonlyArray<Issue>): string => {
  const field = fieldName(path)
  const types = issues.map((i) => (i._tag === "Type" ? typeIssue.exec(i.message) : null))
  let message = issues[0]!.message
  if (types.every((t) => t !== null)) {
    const expected = types.map((t) => t![1]!).filter((e) => e !== "undefined")
    const actual = types[0]![2]!
    message =
      expected.length > 1 ? `expected one of ${expected.join(", ")}, got ${actual}` : `expected ${expected[0] ?? "undefined"}, got ${actual}`
  }
  if (field === "" || message.startsWith(`${field} `)) return message
  return message.startsWith("is ") ? `${field} ${message}` : `${field}: ${message}`
}

const startsWith = (path: ReadonlyArray<PropertyKey>, prefix: ReadonlyArray<PropertyKey>) =>
  prefix.length <= path.length && prefix.every((key, i) => key === path[i])

/**
 * The sentence a 400 leads with, built from its issues, e.g. `invalid query: limit must be a whole
 * number from 1 to 1000`: one clause per field, in the order of the issues. An issue is about a header
 * when its field is a header the request carries and not a query parameter; every other input of
 * this API is the query.
 */
export const describeIssues = (issues: ReadonlyArray<Issue>, request: HttpServerRequest.HttpServerRequest): string => {
  const query = new URLSearchParams(request.url.includes("?") ? request.url.slice(request.url.indexOf("?") + 1) : "")
  const fields: Array<{ readonly path: ReadonlyArray<PropertyKey>; readonly issues: Array<Issue> }> = []
  for (const issue of issues) {
    const same = fields.find((f) => f.path.length === issue.path.length && startsWith(f.path, issue.path))
    if (same !== undefined) same.issues.push(issue)
    // a union's other alternative for a field already explained deeper down (`symbols` after `symbols[1]`)
    else if (!fields.some((f) => issue.path.length > 0 && startsWith(f.path, issue.path))) fields.push({ path: issue.path, issues: [issue] })
  }
  const groups = { query: [] as Array<string>, headers: [] as Array<string> }
  for (const field of fields) {
    const first = field.path[0]
    const isHeader = typeof first === "string" && request.headers[first] !== undefined && !query.has(first)
    groups[isHeader ? "headers" : "query"].push(clause(field.path, field.issues))
  }
  const parts = [
    ...(groups.query.length > 0 || fields.length === 0 ? [`invalid query: ${groups.query.join("; ") || "not as the endpoint expects"}`] : []),
    ...(groups.headers.length > 0 ? [`invalid headers: ${groups.headers.join("; ")}`] : [])
  ]
  return parts.join("; ")
}

/**
 * The HttpApi-level middleware for these answers: a request no route took gets `unroutedResponse`
 * (from the router's routes at that moment), and a decode failure keeps its `_tag` and `issues` but
 * leads with `describeIssues` instead of the schema dump HttpApi puts in `message`.
 */
export const makeClientErrorsMiddleware =
  (routes: Effect.Effect<Iterable<RouteShape>>) =>
  <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      return yield* app.pipe(
        Effect.mapError((error): E =>
          error instanceof HttpApiError.HttpApiDecodeError
            ? (new HttpApiError.HttpApiDecodeError({ issues: error.issues, message: describeIssues(error.issues, request) }) as E)
            : error
        ),
        Effect.catchIf(
          (error) => error instanceof HttpServerError.RouteNotFound,
          () => Effect.map(routes, (known) => unroutedResponse(request, known))
        )
      )
    })
