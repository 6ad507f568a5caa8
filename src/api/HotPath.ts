import { Effect } from "effect"
import type { IncomingMessage, Server, ServerResponse } from "node:http"
import { SecurityConfig, staticApiHeaders } from "./Security.js"

/** How long a remembered answer is served from memory: new ticks arrive once per poll interval. */
export const HOT_TTL_MS = 1000
const MAX_ENTRIES = 1000

interface Entry {
  readonly body: Buffer
  readonly expires: number
}

/**
 * Ready-made answers of the hottest read (`/trades/latest`), served straight from `node:http`
 * without the Effect request pipeline, for at most HOT_TTL_MS after the pipeline produced them.
 * Only when no security setting needs a per-request decision (API keys, rate limits, CORS are all
 * off): then the answer and its headers are the same for every client. Otherwise it stays unused.
 */
export class HotResponses extends Effect.Service<HotResponses>()("api/HotResponses", {
  effect: Effect.gen(function* () {
    const fixedHeaders = staticApiHeaders(yield* SecurityConfig)
    const entries = new Map<string, Entry>()
    const enabled = fixedHeaders !== undefined
    const headers = { ...fixedHeaders, "content-type": "application/json" }

    /** Keeps the JSON body the pipeline answered `url` with. */
    const remember = (url: string, body: string) =>
      Effect.sync(() => {
        if (!enabled) return
        if (entries.size >= MAX_ENTRIES) entries.delete(entries.keys().next().value!)
        entries.set(url, { body: Buffer.from(body), expires: Date.now() + HOT_TTL_MS })
      })

    /** Answers a GET from memory when a fresh answer exists; false leaves the request to the pipeline. */
    const tryServe = (request: IncomingMessage, response: ServerResponse): boolean => {
      if (!enabled || request.method !== "GET" || request.url === undefined) return false
      const hit = entries.get(request.url)
      if (hit === undefined) return false
      if (hit.expires <= Date.now()) {
        entries.delete(request.url)
        return false
      }
      response.writeHead(200, { ...headers, "content-length": hit.body.length })
      response.end(hit.body)
      return true
    }

    return { enabled, remember, tryServe } as const
  })
}) {}

/** `server` with the hot path in front of whatever handles its "request" events. */
export const withHotPath = (server: Server, hot: HotResponses): Server => {
  const emit = server.emit.bind(server) as (event: string | symbol, ...args: Array<unknown>) => boolean
  server.emit = ((event: string | symbol, ...args: Array<unknown>) =>
    event === "request" && hot.tryServe(args[0] as IncomingMessage, args[1] as ServerResponse)
      ? true
      : emit(event, ...args)) as Server["emit"]
  return server
}
