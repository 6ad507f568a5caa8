import * as http from "node:http"
import * as net from "node:net"

/** One server-sent event as a client dispatches it. */
export interface SseEvent {
  readonly id: number
  readonly event: string
  readonly data: string
}

/** An incremental text/event-stream parser: events, comments and the retry field, in arrival order. */
export const sseParser = () => {
  let pending = ""
  const events: Array<SseEvent> = []
  const comments: Array<string> = []
  /** Every block in order: "event", "comment" or "retry", to check what comes first. */
  const order: Array<string> = []
  let retry: number | undefined
  const push = (text: string) => {
    pending += text
    for (let at = pending.indexOf("\n\n"); at >= 0; at = pending.indexOf("\n\n")) {
      const block = pending.slice(0, at)
      pending = pending.slice(at + 2)
      const fields: Record<string, string> = {}
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) {
          comments.push(line.slice(1).trim())
          order.push("comment")
          continue
        }
        const colon = line.indexOf(":")
        const value = line.slice(colon + 1)
        fields[line.slice(0, colon)] = value.startsWith(" ") ? value.slice(1) : value
      }
      if (fields["retry"] !== undefined) {
        retry = Number(fields["retry"])
        order.push("retry")
      }
      if (fields["data"] !== undefined) {
        events.push({ id: Number(fields["id"]), event: fields["event"] ?? "message", data: fields["data"] })
        order.push("event")
      }
    }
  }
  return { push, events, comments, order, retry: () => retry } as const
}

/** Polls `check` every 25 ms until it returns true, or throws after `timeoutMs`. */
export const until = async (check: () => boolean, timeoutMs: number, what: string) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

export interface SseClient extends ReturnType<typeof sseParser> {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  /** Whether the server ended the response. */
  ended(): boolean
  close(): void
}

/** GET `url` and parse what comes, as a reading client. Resolves once the response head arrived. */
export const connectSse = (url: string, headers: Record<string, string> = {}): Promise<SseClient> =>
  new Promise((resolve, reject) => {
    const parser = sseParser()
    let ended = false
    const req = http.get(url, { headers: { accept: "text/event-stream", ...headers } }, (res) => {
      res.setEncoding("utf8")
      res.on("data", (text: string) => parser.push(text))
      res.on("end", () => (ended = true))
      res.on("error", () => (ended = true))
      resolve({ ...parser, status: res.statusCode ?? 0, headers: res.headers, ended: () => ended, close: () => req.destroy() })
    })
    req.on("error", reject)
  })

/**
 * A client that sends GET `path` and then does not read (its socket paused, so the kernel's buffers
 * fill and the server's writes stop draining). `resume` reads everything held and what follows.
 */
export const pausedClient = (port: number, path: string, headers: Record<string, string> = {}) => {
  const socket = net.connect(port, "127.0.0.1")
  let received = 0
  let closed = false
  socket.on("close", () => (closed = true))
  socket.on("error", () => (closed = true))
  socket.on("connect", () => {
    const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${lines.join("")}\r\n`)
    socket.pause()
  })
  return {
    resume: () => {
      socket.on("data", (b: Buffer) => (received += b.length))
      socket.resume()
    },
    received: () => received,
    closed: () => closed,
    destroy: () => socket.destroy()
  } as const
}
