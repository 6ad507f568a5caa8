import { Effect } from "effect"
import type { IncomingMessage, Server, ServerResponse } from "node:http"
import { staticApiHeaders } from "./security/headers.js"
import { SecurityConfig } from "./security/settings.js"

/** How long a remembered answer is served from memory: new ticks arrive once per poll interval. */
export const HOT_TTL_MS = 1000
/**
 * Most bytes the remembered answers take in all (bodies and their URLs): 8 MiB, a small share of a
 * 512 MB instance, and about 40 of the largest answers (limit=1000, ~200 KB). Past it the oldest
 * answers go first; an answer larger than the whole budget is never kept.
 */
export const HOT_MAX_BYTES = 8 * 1024 * 1024

interface Entry {
  readonly body: Buffer
  readonly expires: number
  readonly bytes: number
}

/**
 * Ready-made answers of the hottest read (`/trades/latest`), served straight from `node:http`
 * without the Effect request pipeline, for at most HOT_TTL_MS after the pipeline produced them.
 * Only when no security setting needs a per-request decision (API keys, rate limits, CORS are all
 * off): then the answer and its headers are the same for every client. Otherwise it stays unused.
 *
 * Memory stays bounded whatever the URLs: at most HOT_MAX_BYTES in all, and an answer is freed when
 * it expires, by a timer (which never keeps the process alive), whether or not its URL is asked
 * again. The TTL is fixed, so insertion order is expiry order: the oldest entry is always first.
 */
export class HotResponses extends Effect.Service<HotResponses>()("api/HotResponses", {
  scoped: Effect.gen(function* () {
    const fixedHeaders = staticApiHeaders(yield* SecurityConfig)
    const entries = new Map<string, Entry>()
    let held = 0
    const enabled = fixedHeaders !== undefined
    const headers = { ...fixedHeaders, "content-type": "application/json" }

    const drop = (url: string, entry: Entry) => {
      entries.delete(url)
      held -= entry.bytes
    }
    /** Frees every answer expired at `now`: they lead the map. */
    const sweep = (now: number) => {
      for (const [url, entry] of entries) {
        if (entry.expires > now) break
        drop(url, entry)
      }
    }

    // One timer, set for the oldest answer's expiry while any answer is held.
    let timer: ReturnType<typeof setTimeout> | undefined
    const arm = () => {
      if (timer !== undefined) return
      const oldest = entries.values().next()
      if (oldest.done === true) return
      timer = setTimeout(onTimer, Math.max(0, oldest.value.expires - Date.now()) + 1)
      timer.unref()
    }
    const onTimer = () => {
      timer = undefined
      sweep(Date.now())
      arm()
    }
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        clearTimeout(timer)
        timer = undefined
        entries.clear()
        held = 0
      })
    )

    /** Keeps the JSON body the pipeline answered `url` with, if it fits in HOT_MAX_BYTES at all. */
    const remember = (url: string, body: string) =>
      Effect.sync(() => {
        if (!enabled) return
        const now = Date.now()
        sweep(now)
        const previous = entries.get(url)
        if (previous !== undefined) drop(url, previous) // re-inserted at the end: order stays expiry order
        const encoded = Buffer.from(body)
        const bytes = encoded.length + Buffer.byteLength(url)
        if (bytes > HOT_MAX_BYTES) return
        for (const [oldest, entry] of entries) {
          if (held + bytes <= HOT_MAX_BYTES) break
          drop(oldest, entry)
        }
        entries.set(url, { body: encoded, expires: now + HOT_TTL_MS, bytes })
        held += bytes
        arm()
      })

    /** Answers a GET from memory when a fresh answer exists; false leaves the request to the pipeline. */
    const tryServe = (request: IncomingMessage, response: ServerResponse): boolean => {
      if (!enabled || request.method !== "GET" || request.url === undefined || entries.size === 0) return false
      const now = Date.now()
      sweep(now)
      const hit = entries.get(request.url)
      if (hit === undefined) return false
      if (hit.expires <= now) {
        drop(request.url, hit) // behind a fresher one only if the wall clock stepped back
        return false
      }
      response.writeHead(200, { ...headers, "content-length": hit.body.length })
      response.end(hit.body)
      return true
    }

    /** Answers held now and the bytes they take (bodies and URLs), for tests and metrics. */
    const size = () => ({ entries: entries.size, bytes: held })

    return { enabled, remember, tryServe, size } as const
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
