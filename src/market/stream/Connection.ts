import WebSocket from "ws"

/** What one WebSocket connection reports, each at most once except `message`. */
export type ConnectionEvent =
  | { readonly _tag: "open" }
  | { readonly _tag: "message"; readonly text: string }
  /** The handshake was answered with this HTTP status instead of 101 (451: a restricted location). */
  | { readonly _tag: "rejected"; readonly status: number }
  /** The connection ended (or never opened); `detail` says how. Nothing follows it. */
  | { readonly _tag: "closed"; readonly detail: string }

export interface Connection {
  /** A normal close (code 1000): the platform ends the connection, e.g. once its renewal carries data. */
  readonly close: () => void
  /** Drops the connection at once (a silent connection's socket may never answer a close). */
  readonly terminate: () => void
}

const HANDSHAKE_TIMEOUT_MS = 10_000

/**
 * Opens one connection to `url` with the `ws` client and reports what happens to `onEvent`. `ws`
 * answers every ping with a pong echoing its payload (`autoPong`), which is what Binance requires
 * within a minute; the platform sends nothing else, so it stays far under 5 incoming messages/s.
 */
export const openConnection = (url: string, onEvent: (event: ConnectionEvent) => void): Connection => {
  let ended = false
  let lastError = ""
  const end = (event: ConnectionEvent) => {
    if (ended) return
    ended = true
    onEvent(event)
  }
  const ws = new WebSocket(url, { autoPong: true, handshakeTimeout: HANDSHAKE_TIMEOUT_MS, perMessageDeflate: false })
  ws.on("open", () => onEvent({ _tag: "open" }))
  ws.on("message", (data: WebSocket.RawData) => {
    if (!ended) onEvent({ _tag: "message", text: data.toString() })
  })
  ws.on("unexpected-response", (request, response) => {
    response.resume()
    end({ _tag: "rejected", status: response.statusCode ?? 0 })
    request.destroy()
  })
  ws.on("error", (error: Error) => {
    lastError = error.message
  })
  ws.on("close", (code: number, reason: Buffer) => {
    const why = reason.length > 0 ? `: ${reason.toString()}` : ""
    end({ _tag: "closed", detail: lastError !== "" && code === 1006 ? lastError : `closed with code ${code}${why}` })
  })
  const guarded = (f: () => void) => () => {
    try {
      f()
    } catch {
      // closing a connection that is already gone: nothing to do
    }
  }
  return {
    close: guarded(() => (ws.readyState === WebSocket.CONNECTING ? ws.terminate() : ws.close(1000, "renewed"))),
    terminate: guarded(() => ws.terminate())
  }
}
