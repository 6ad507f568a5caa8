import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect } from "effect"
import { Api } from "../Api.js"
import { KnownSymbols } from "../KnownSymbols.js"
import { LiveFeed } from "./LiveFeed.js"
import { parseEventIdHeader } from "./StreamApi.js"

/** No caching, and no buffering by a proxy in front (nginx): each event is to reach the client as it is sent. */
const SSE_HEADERS = { "cache-control": "no-cache", "x-accel-buffering": "no" } as const

/** The net.Server a request came in on (Node sets `socket.server` on every accepted connection). */
const serverOf = (request: HttpServerRequest.HttpServerRequest) =>
  (NodeHttpServerRequest.toIncomingMessage(request).socket as { server?: { readonly listening: boolean } } | null)?.server

/** GET /stream: the request's symbols checked as elsewhere (400 when unknown), then the live feed's stream. */
export const LiveHttpLive = HttpApiBuilder.group(Api, "live", (handlers) =>
  Effect.gen(function* () {
    const feed = yield* LiveFeed
    const known = yield* KnownSymbols
    return handlers.handle("stream", ({ headers, urlParams }) =>
      Effect.gen(function* () {
        if (urlParams.symbols !== undefined) yield* Effect.forEach(urlParams.symbols, known.require, { discard: true })
        const request = yield* HttpServerRequest.HttpServerRequest
        const response = NodeHttpServerRequest.toServerResponse(request)
        // a browser's reconnect keeps the URL it was given and sends the newer id in the header
        const lastEventId = parseEventIdHeader(headers["last-event-id"]) ?? urlParams.last_event_id
        const body = feed.subscribe({
          kinds: urlParams.kinds,
          symbols: urlParams.symbols,
          lastEventId,
          // a reset, not a close: a socket that does not read would hold a close (and its unsent
          // megabytes in the kernel) for minutes; the client's reader sees an error and reconnects
          drop: () => (response.socket === null ? response.destroy() : response.socket.resetAndDestroy()),
          server: serverOf(request)
        })
        return HttpServerResponse.raw(body, { contentType: "text/event-stream", headers: SSE_HEADERS })
      })
    )
  })
)
