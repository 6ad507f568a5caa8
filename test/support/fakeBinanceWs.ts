/**
 * The WebSocket side of the fake Binance (BINANCE_API.md §3, §5), on the REST fake's own HTTP
 * server and port: `ws://127.0.0.1:<port>/stream?streams=a/b` (combined envelope
 * `{"stream":…,"data":…}`) and `/ws/<stream>[/<stream>…]` (raw payloads; `/ws` alone waits for a
 * SUBSCRIBE). Streams served from the trade world (fakeMarket.ts): `<symbol>@aggTrade` and
 * `<symbol>@kline_1m` (a closed bar, `x:true`, at each minute boundary of the fake's clock, and
 * `x:false` updates every `klineUpdateMs`). Other stream names, unknown symbols and upper-case
 * symbols are accepted and stay silent, as on Binance.
 *
 * Connection rules run on real time (timers, `Date.now()` in every recorded `at`), whatever the
 * fake's clock: event times `E`, trade times and minutes follow the fake's clock. A connection
 * receives the trades made while it is subscribed, never earlier ones: trades made while nobody
 * listened (between a drop and the reconnect, say) are only in REST.
 */
import type { IncomingMessage } from "node:http"
import type { Server } from "node:http"
import type { Duplex } from "node:stream"
import { type WebSocket, WebSocketServer } from "ws"
import { type AggTrade, barWs, type Market, MINUTE_MS } from "./fakeMarket.js"

export interface FakeWsOptions {
  /** Server ping period (default 20 000). Below ~250 the client's pongs alone pass 5 frames/s. */
  readonly pingIntervalMs?: number
  /** A ping not answered by a pong with the same payload within this closes the connection (default 60 000). */
  readonly pongTimeoutMs?: number
  /** Incoming frames (messages, pings, pongs) allowed in any 1 s window (default 5). */
  readonly maxIncomingPerSecond?: number
  /** Streams per connection (default 1024): more in the URL is answered HTTP 400. */
  readonly maxStreams?: number
  /** Connection lifetime (default 24 h): the server closes (code 1000) at it. */
  readonly maxLifetimeMs?: number
  /** Period of open-bar (`x:false`) kline updates (default 2000; 0: none). */
  readonly klineUpdateMs?: number
  /** How often the world grows and minute boundaries are checked while connections are open (default 50). */
  readonly tickMs?: number
  /** After `serverShutdown()`, connections still open this long are closed by the server (default 10 000). */
  readonly shutdownGraceMs?: number
}

export interface WsAttempt {
  readonly at: number
  /** Path and query as requested, e.g. "/stream?streams=btcusdt@aggTrade/btcusdt@kline_1m". */
  readonly path: string
  /** HTTP status answered to the handshake: 101 (opened), 451, 400 (too many streams), 404 (other path). */
  readonly status: 101 | 400 | 404 | 451
  readonly connectionId?: number
}

export interface WsFrame {
  readonly at: number
  readonly payload: string
}

export interface WsConnection {
  readonly id: number
  readonly path: string
  readonly combined: boolean
  /** Current subscriptions, as named by the client. */
  readonly streams: ReadonlyArray<string>
  readonly openedAt: number
  /** When the close completed (the connection is open while undefined). */
  readonly closedAt: number | undefined
  /** Who initiated the close: set as soon as the server decides to close, or when the client's close arrives. */
  readonly closedBy: "client" | "server" | undefined
  /** Why the server closed it: "dropped", "pong timeout", "too many messages", "lifetime", "shutdown", "fake closed". */
  readonly serverReason: string | undefined
  readonly closeCode: number | undefined
  readonly pings: ReadonlyArray<WsFrame>
  readonly pongs: ReadonlyArray<WsFrame>
  /** Text/binary messages received from the client. */
  readonly messages: ReadonlyArray<WsFrame>
  /** Incoming frames of every kind (messages, pings, pongs). */
  readonly incoming: number
  /** Aggregate trades sent on this connection, in order. */
  readonly trades: ReadonlyArray<{ readonly symbol: string; readonly a: number }>
  /** Klines sent on this connection, in order. */
  readonly klines: ReadonlyArray<{ readonly symbol: string; readonly t: number; readonly x: boolean }>
  readonly shutdownNoticeAt: number | undefined
}

export interface FakeBinanceWs {
  /** "ws://127.0.0.1:<port>", the value for BINANCE_WS_URL. */
  readonly url: string
  /** Every handshake, in arrival order (live view). */
  readonly attempts: ReadonlyArray<WsAttempt>
  /** Every connection ever opened (live view). */
  readonly connections: ReadonlyArray<WsConnection>
  /** The connections open now. */
  open(): ReadonlyArray<WsConnection>
  /** Trades withheld from every connection: by `skip`, or while silenced. */
  withheld(symbol?: string): ReadonlyArray<{ readonly symbol: string; readonly a: number; readonly why: "skip" | "silence" }>
  /** Changes options for what happens next (new connections; the tick and kline periods at once). */
  configure(options: FakeWsOptions): void
  /** Terminates every open connection abruptly (no close frame). */
  dropAll(): void
  /** Terminates one connection abruptly. */
  drop(connectionId: number): void
  /** No data message (trades, klines) for `ms`, or until `resume()`; pings continue. Trades meanwhile are never sent. */
  silence(ms?: number): void
  resume(): void
  /** Sends serverShutdown on every open connection (raw form on /ws ones) and closes those still open after the grace. */
  serverShutdown(options?: { readonly graceMs?: number }): void
  /** The next `count` trades of `symbol` (upper case) are not sent on any connection; REST has them. */
  skip(symbol: string, count: number): void
  /** Answer every handshake with HTTP 451 and Binance's JSON body while on. */
  reject451(on: boolean): void
  /** Sends the 1m kline of `symbol` opening at `openTime` now to its subscribers (closed unless told). */
  sendKline(symbol: string, openTime: number, closed?: boolean): void
  /** Sends a text frame as is to every open connection (or one): for malformed-message tests. */
  sendRaw(text: string, connectionId?: number): void
}

interface Conn extends WsConnection {
  readonly ws: WebSocket
  streams: Array<string>
  closedAt: number | undefined
  closedBy: "client" | "server" | undefined
  serverReason: string | undefined
  closeCode: number | undefined
  pings: Array<WsFrame>
  pongs: Array<WsFrame>
  messages: Array<WsFrame>
  incoming: number
  trades: Array<{ symbol: string; a: number }>
  klines: Array<{ symbol: string; t: number; x: boolean }>
  shutdownNoticeAt: number | undefined
  readonly recent: Array<number>
  readonly timers: Set<NodeJS.Timeout>
  readonly awaitingPong: Map<string, NodeJS.Timeout>
}

const JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
const STATUS_TEXT: Readonly<Record<number, string>> = { 400: "Bad Request", 404: "Not Found", 451: "Unavailable For Legal Reasons" }

export interface WsDeps {
  readonly server: Server
  readonly url: string
  readonly now: () => number
  readonly market: Market
  readonly isKnown: (symbol: string) => boolean
  readonly body451: string
  readonly options: FakeWsOptions | undefined
}

/** Parses "btcusdt@aggTrade" into its upper-case symbol and kind, or undefined when we do not serve it. */
const parseStream = (stream: string): { symbol: string; kind: "aggTrade" | "kline_1m" } | undefined => {
  const m = /^([a-z0-9]+)@(aggTrade|kline_1m)$/.exec(stream)
  return m === null ? undefined : { symbol: m[1]!.toUpperCase(), kind: m[2] as "aggTrade" | "kline_1m" }
}

export const attachFakeBinanceWs = (deps: WsDeps): FakeBinanceWs & { close(): void } => {
  const { now, market } = deps
  let opts: Required<FakeWsOptions> = {
    pingIntervalMs: 20_000, pongTimeoutMs: 60_000, maxIncomingPerSecond: 5, maxStreams: 1024,
    maxLifetimeMs: 86_400_000, klineUpdateMs: 2000, tickMs: 50, shutdownGraceMs: 10_000, ...deps.options
  }
  const wss = new WebSocketServer({ noServer: true })
  const attempts: Array<WsAttempt> = []
  const connections: Array<Conn> = []
  const withheld: Array<{ symbol: string; a: number; why: "skip" | "silence" }> = []
  const skips = new Map<string, number>()
  const lastClosedMinute = new Map<string, number>()
  let nextId = 1
  let refuse451 = false
  let silencedUntil = 0
  let tick: NodeJS.Timeout | undefined
  let lastOpenKlineAt = 0

  const openConns = (): Array<Conn> => connections.filter((c) => c.closedAt === undefined)
  const silenced = (): boolean => Date.now() < silencedUntil

  const later = (set: Set<NodeJS.Timeout>, ms: number, f: () => void): void => {
    const t = setTimeout(() => {
      set.delete(t)
      f()
    }, ms)
    set.add(t)
  }

  const serverClose = (c: Conn, reason: string, code?: number): void => {
    if (c.closedAt !== undefined || c.serverReason !== undefined) return
    c.serverReason = reason
    c.closedBy = "server"
    if (code === undefined) return void c.ws.terminate()
    c.ws.close(code, reason)
    later(c.timers, 1000, () => c.ws.terminate())
  }

  const sendText = (c: Conn, text: string): void => {
    if (c.ws.readyState === c.ws.OPEN) c.ws.send(text)
  }
  const sendEvent = (c: Conn, stream: string, data: unknown): void =>
    sendText(c, JSON.stringify(c.combined ? { stream, data } : data))

  const subscribers = (stream: string): Array<Conn> => openConns().filter((c) => c.streams.includes(stream))

  const broadcastTrades = (symbol: string, trades: ReadonlyArray<AggTrade>): void => {
    const stream = `${symbol.toLowerCase()}@aggTrade`
    for (const t of trades) {
      const toSkip = skips.get(symbol) ?? 0
      if (toSkip > 0) {
        skips.set(symbol, toSkip - 1)
        withheld.push({ symbol, a: t.a, why: "skip" })
        continue
      }
      if (silenced()) {
        withheld.push({ symbol, a: t.a, why: "silence" })
        continue
      }
      const event = { e: "aggTrade", E: Math.max(now(), t.T), s: symbol, ...t }
      for (const c of subscribers(stream)) {
        sendEvent(c, stream, event)
        c.trades.push({ symbol, a: t.a })
      }
    }
  }
  market.onTrades(broadcastTrades)

  /** False when the minute is before the trade world (nothing sent). */
  const sendKline = (symbol: string, openTime: number, closed: boolean): boolean => {
    const bar = market.bar(symbol, openTime, now())
    if (bar === undefined) return false
    if (silenced()) return true
    const stream = `${symbol.toLowerCase()}@kline_1m`
    const event = { e: "kline", E: now(), s: symbol, k: barWs(symbol, bar, closed) }
    for (const c of subscribers(stream)) {
      sendEvent(c, stream, event)
      c.klines.push({ symbol, t: openTime, x: closed })
    }
    return true
  }

  const onTick = (): void => {
    const t = now()
    const open = openConns()
    const wanted = new Map<string, Set<string>>()
    for (const c of open) {
      for (const s of c.streams) {
        const p = parseStream(s)
        if (p === undefined || !deps.isKnown(p.symbol)) continue
        wanted.set(p.symbol, (wanted.get(p.symbol) ?? new Set()).add(p.kind))
      }
    }
    const minute = Math.floor(t / MINUTE_MS) * MINUTE_MS
    const updateOpen = opts.klineUpdateMs > 0 && Date.now() - lastOpenKlineAt >= opts.klineUpdateMs
    if (updateOpen) lastOpenKlineAt = Date.now()
    for (const [symbol, kinds] of wanted) {
      market.advance(symbol, t)
      if (!kinds.has("kline_1m")) continue
      const last = lastClosedMinute.get(symbol) ?? minute - MINUTE_MS
      if (last < minute - MINUTE_MS) {
        for (let m = Math.max(last + MINUTE_MS, minute - 5 * MINUTE_MS); m < minute; m += MINUTE_MS) sendKline(symbol, m, true)
        lastClosedMinute.set(symbol, minute - MINUTE_MS)
      }
      if (updateOpen) sendKline(symbol, minute, false)
    }
    if (open.length === 0 && tick !== undefined) {
      clearInterval(tick)
      tick = undefined
      lastClosedMinute.clear()
    }
  }

  const ensureTick = (): void => {
    tick ??= setInterval(onTick, opts.tickMs)
  }

  const countIncoming = (c: Conn): void => {
    c.incoming += 1
    const t = Date.now()
    c.recent.push(t)
    while (c.recent.length > 0 && c.recent[0]! <= t - 1000) c.recent.shift()
    if (c.recent.length > opts.maxIncomingPerSecond) serverClose(c, "too many messages", 1008)
  }

  const onMessage = (c: Conn, text: string): void => {
    let req: { method?: unknown; params?: unknown; id?: unknown }
    try {
      req = JSON.parse(text) as typeof req
    } catch {
      return sendText(c, JSON.stringify({ code: 3, msg: "Invalid JSON: expected value at line 1 column 1" }))
    }
    const id = req.id ?? null
    const params = Array.isArray(req.params) ? req.params.filter((p): p is string => typeof p === "string") : []
    switch (req.method) {
      case "SUBSCRIBE": {
        const next = [...c.streams, ...params.filter((p) => !c.streams.includes(p))]
        if (next.length > opts.maxStreams) return sendText(c, JSON.stringify({ code: 2, msg: `Invalid request: more than ${opts.maxStreams} streams`, id }))
        catchUp(next)
        c.streams = next
        return sendText(c, JSON.stringify({ result: null, id }))
      }
      case "UNSUBSCRIBE":
        c.streams = c.streams.filter((s) => !params.includes(s))
        return sendText(c, JSON.stringify({ result: null, id }))
      case "LIST_SUBSCRIPTIONS":
        return sendText(c, JSON.stringify({ result: c.streams, id }))
      default:
        return sendText(c, JSON.stringify({ code: 2, msg: `Invalid request: unknown variant ${String(req.method)}, expected one of \`SUBSCRIBE\`, \`UNSUBSCRIBE\`, \`LIST_SUBSCRIPTIONS\`, \`SET_PROPERTY\`, \`GET_PROPERTY\``, id }))
    }
  }

  const sendPing = (c: Conn, n: number): void => {
    if (c.ws.readyState !== c.ws.OPEN) return
    const payload = `${c.id}-${n}`
    c.pings.push({ at: Date.now(), payload })
    c.ws.ping(payload)
    const deadline = setTimeout(() => serverClose(c, "pong timeout"), opts.pongTimeoutMs)
    c.awaitingPong.set(payload, deadline)
  }

  /** Grows the worlds a new subscription covers first: trades made while nobody listened are never streamed. */
  const catchUp = (streams: ReadonlyArray<string>): void => {
    for (const s of streams) {
      const p = parseStream(s)
      if (p === undefined || !deps.isKnown(p.symbol)) continue
      market.advance(p.symbol, now())
      if (p.kind === "kline_1m" && !lastClosedMinute.has(p.symbol)) {
        lastClosedMinute.set(p.symbol, Math.floor(now() / MINUTE_MS) * MINUTE_MS - MINUTE_MS)
      }
    }
  }

  const accept = (ws: WebSocket, path: string, combined: boolean, streams: Array<string>): Conn => {
    catchUp(streams)
    const c: Conn = {
      id: nextId++, ws, path, combined, streams, openedAt: Date.now(), closedAt: undefined, closedBy: undefined,
      serverReason: undefined, closeCode: undefined, pings: [], pongs: [], messages: [], incoming: 0, trades: [],
      klines: [], shutdownNoticeAt: undefined, recent: [], timers: new Set(), awaitingPong: new Map()
    }
    connections.push(c)
    let pingCount = 0
    const pinger = setInterval(() => sendPing(c, ++pingCount), opts.pingIntervalMs)
    if (opts.maxLifetimeMs <= 2 ** 31 - 1) later(c.timers, opts.maxLifetimeMs, () => serverClose(c, "lifetime", 1000))
    ws.on("message", (data, isBinary) => {
      countIncoming(c)
      const text = Buffer.isBuffer(data) ? data.toString("utf8") : Array.isArray(data) ? Buffer.concat(data).toString("utf8") : Buffer.from(data).toString("utf8")
      c.messages.push({ at: Date.now(), payload: text })
      if (!isBinary && c.closedAt === undefined && c.serverReason === undefined) onMessage(c, text)
    })
    ws.on("ping", () => countIncoming(c))
    ws.on("pong", (data) => {
      countIncoming(c)
      const payload = data.toString("utf8")
      c.pongs.push({ at: Date.now(), payload })
      const deadline = c.awaitingPong.get(payload)
      if (deadline !== undefined) {
        clearTimeout(deadline)
        c.awaitingPong.delete(payload)
      }
    })
    ws.on("error", () => undefined)
    ws.on("close", (code) => {
      c.closedAt = Date.now()
      c.closedBy ??= "client"
      c.closeCode = code
      clearInterval(pinger)
      for (const t of c.timers) clearTimeout(t)
      for (const t of c.awaitingPong.values()) clearTimeout(t)
    })
    ensureTick()
    return c
  }

  const refuse = (socket: Duplex, status: 400 | 404 | 451, body: string): void => {
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: ${JSON_CONTENT_TYPE}\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
    )
  }

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const path = req.url ?? "/"
    const at = Date.now()
    const url = new URL(path, "http://127.0.0.1")
    if (refuse451) {
      attempts.push({ at, path, status: 451 })
      return refuse(socket, 451, deps.body451)
    }
    let streams: Array<string> | undefined
    if (url.pathname === "/stream") streams = (url.searchParams.get("streams") ?? "").split("/").filter((s) => s !== "")
    else if (url.pathname === "/ws" || url.pathname.startsWith("/ws/")) streams = url.pathname.slice(4).split("/").filter((s) => s !== "")
    if (streams === undefined || (url.pathname === "/stream" && streams.length === 0)) {
      attempts.push({ at, path, status: 404 })
      return refuse(socket, 404, JSON.stringify({ code: -1000, msg: `Path not found: ${url.pathname}` }))
    }
    if (streams.length > opts.maxStreams) {
      attempts.push({ at, path, status: 400 })
      return refuse(socket, 400, JSON.stringify({ code: -1000, msg: `Too many streams: ${streams.length} > ${opts.maxStreams}` }))
    }
    const combined = url.pathname === "/stream"
    const chosen = streams
    wss.handleUpgrade(req, socket, head, (ws) => {
      const c = accept(ws, path, combined, chosen)
      attempts.push({ at, path, status: 101, connectionId: c.id })
    })
  }
  deps.server.on("upgrade", onUpgrade)

  return {
    url: deps.url,
    get attempts() {
      return attempts
    },
    get connections() {
      return connections
    },
    open: openConns,
    withheld: (symbol) => (symbol === undefined ? withheld : withheld.filter((w) => w.symbol === symbol)),
    configure: (o) => {
      opts = { ...opts, ...o }
      if (tick !== undefined && o.tickMs !== undefined) {
        clearInterval(tick)
        tick = setInterval(onTick, opts.tickMs)
      }
    },
    dropAll: () => {
      for (const c of openConns()) serverClose(c, "dropped")
    },
    drop: (id) => {
      const c = connections.find((x) => x.id === id)
      if (c !== undefined) serverClose(c, "dropped")
    },
    silence: (ms) => {
      silencedUntil = ms === undefined ? Infinity : Date.now() + ms
    },
    resume: () => {
      silencedUntil = 0
    },
    serverShutdown: (o) => {
      const E = now()
      for (const c of openConns()) {
        c.shutdownNoticeAt = Date.now()
        const data = { e: "serverShutdown", E }
        sendText(c, JSON.stringify(c.combined ? { stream: "!serverShutdown", data } : data))
        later(c.timers, o?.graceMs ?? opts.shutdownGraceMs, () => serverClose(c, "shutdown", 1001))
      }
    },
    skip: (symbol, count) => {
      skips.set(symbol, (skips.get(symbol) ?? 0) + count)
    },
    reject451: (on) => {
      refuse451 = on
    },
    sendKline: (symbol, openTime, closed = true) => {
      if (!sendKline(symbol, openTime, closed)) {
        throw new Error(`fake Binance: no trades before ${new Date(market.worldStart).toISOString()}`)
      }
    },
    sendRaw: (text, id) => {
      for (const c of openConns()) if (id === undefined || c.id === id) sendText(c, text)
    },
    close: () => {
      if (tick !== undefined) clearInterval(tick)
      tick = undefined
      for (const c of openConns()) serverClose(c, "fake closed")
      deps.server.off("upgrade", onUpgrade)
      wss.close()
    }
  }
}
