import { apiKey, authHeaders, getJson, NetworkError, reportUnauthorized, sleep } from "./api.js"
import type { CandleJson, TickerJson, TradeJson } from "./model.js"
import { SseParser } from "./sse.js"

/**
 * New events for the page: from `GET /stream` (Server-Sent Events) when the server has it, read with
 * fetch() so the x-api-key header goes along, and resumed after a cut with Last-Event-ID; otherwise
 * (a server without /stream answers 404) by polling /trades/latest and /agg-trades/latest every 2 s.
 * While the stream is down between reconnections, polling keeps the page current. The server's
 * replay on reconnection and the first poll may repeat events: each handler gets an event once
 * (trades by id, tickers by timestamp, per symbol).
 */

export type LiveMode = "connecting" | "stream" | "polling" | "reconnecting" | "offline" | "key needed"

export interface LiveHandlers {
  readonly ticker: (event: TickerJson) => void
  readonly trade: (trade: TradeJson) => void
  /** A closed 1m candle (stream only). */
  readonly candle: (candle: CandleJson) => void
  readonly mode: (mode: LiveMode, detail: string) => void
}

const POLL_MS = 2_000
/** How long a server without /stream is polled before the stream is tried again (it may have been upgraded). */
const STREAM_PROBE_MS = 5 * 60_000
/** No byte for this long (the server sends a heartbeat every 15 s): the connection is dead. */
const STREAM_SILENCE_MS = 45_000
const BACKOFF_MIN_MS = 1_000
const BACKOFF_MAX_MS = 30_000
const KINDS = "ticker,trade,candle"

type Outcome = "unsupported" | "unauthorized" | "ended"

class Feed {
  /** Per symbol: the newest ticker timestamp_utc and the highest trade id handed out. */
  private readonly lastTicker = new Map<string, string>()
  private readonly lastTrade = new Map<string, number>()
  /** Trades each symbol's last poll brought, to size the next one. */
  private readonly tradesPerPoll = new Map<string, number>()
  private lastEventId = ""
  private retryMs: number | undefined

  constructor(
    private readonly symbols: ReadonlyArray<string>,
    private readonly handlers: LiveHandlers,
    private readonly signal: AbortSignal
  ) {}

  private ticker(event: TickerJson) {
    const last = this.lastTicker.get(event.symbol)
    // timestamp_utc has one fixed spelling (microseconds, +00:00): its text orders like its instant
    if (last !== undefined && event.timestamp_utc <= last) return
    this.lastTicker.set(event.symbol, event.timestamp_utc)
    this.handlers.ticker(event)
  }

  private trade(trade: TradeJson) {
    const last = this.lastTrade.get(trade.symbol)
    if (last !== undefined && trade.agg_trade_id <= last) return
    this.lastTrade.set(trade.symbol, trade.agg_trade_id)
    this.handlers.trade(trade)
  }

  // --- polling -------------------------------------------------------------------------------------

  /** One round of polls for every symbol; "unauthorized" when the API wants a (another) key. */
  private async pollOnce(): Promise<"ok" | "unauthorized" | "offline"> {
    let outcome: "ok" | "unauthorized" | "offline" = "ok"
    await Promise.all(
      this.symbols.map(async (symbol) => {
        const seen = this.lastTrade.has(symbol)
        const limit = seen ? Math.min(1000, Math.max(100, 2 * (this.tradesPerPoll.get(symbol) ?? 0))) : 1000
        try {
          const [tickers, trades] = await Promise.all([
            getJson<ReadonlyArray<TickerJson>>(`/trades/latest?symbol=${encodeURIComponent(symbol)}&limit=${this.lastTicker.has(symbol) ? 50 : 1}`, this.signal),
            getJson<ReadonlyArray<TradeJson>>(`/agg-trades/latest?symbol=${encodeURIComponent(symbol)}&limit=${limit}`, this.signal)
          ])
          if (tickers.status === 401 || trades.status === 401) outcome = "unauthorized"
          // newest first in the answers: handed out oldest first
          if (tickers.status === 200 && Array.isArray(tickers.body)) for (const event of [...tickers.body].reverse()) this.ticker(event)
          if (trades.status === 200 && Array.isArray(trades.body)) {
            const before = this.lastTrade.get(symbol)
            for (const trade of [...trades.body].reverse()) this.trade(trade)
            const after = this.lastTrade.get(symbol)
            if (before !== undefined && after !== undefined) this.tradesPerPoll.set(symbol, after - before)
          }
        } catch (e) {
          if (this.signal.aborted) return
          if (!(e instanceof NetworkError)) throw e
          if (outcome === "ok") outcome = "offline"
        }
      })
    )
    return outcome
  }

  /** Polls every 2 s for `ms` (forever with Infinity); stops early on a 401 or when stopped. */
  private async pollFor(ms: number, mode: LiveMode, detail: string): Promise<"done" | "unauthorized"> {
    const until = Date.now() + ms
    while (!this.signal.aborted && Date.now() < until) {
      const started = Date.now()
      const outcome = await this.pollOnce()
      if (outcome === "unauthorized") return "unauthorized"
      this.handlers.mode(outcome === "offline" ? "offline" : mode, outcome === "offline" ? "the server does not answer" : detail)
      await sleep(Math.min(Math.max(0, until - Date.now()), Math.max(0, POLL_MS - (Date.now() - started))), this.signal)
    }
    return "done"
  }

  // --- the stream ----------------------------------------------------------------------------------

  private dispatch(event: string, data: string) {
    let value: unknown
    try {
      value = JSON.parse(data)
    } catch {
      return
    }
    if (typeof value !== "object" || value === null) return
    const symbol = (value as { readonly symbol?: unknown }).symbol
    if (typeof symbol !== "string" || !this.symbols.includes(symbol)) return
    if (event === "ticker") this.ticker(value as TickerJson)
    else if (event === "trade") this.trade(value as TradeJson)
    else if (event === "candle") this.handlers.candle(value as CandleJson)
  }

  /** One connection to /stream, read until it ends; "unsupported" when the server has no stream. */
  private async streamOnce(): Promise<{ readonly outcome: Outcome; readonly lastedMs: number }> {
    const controller = new AbortController()
    const stop = () => controller.abort()
    this.signal.addEventListener("abort", stop)
    const started = Date.now()
    let silence: ReturnType<typeof setTimeout> | undefined
    const watch = () => {
      clearTimeout(silence)
      silence = setTimeout(stop, STREAM_SILENCE_MS)
    }
    try {
      const query = `symbols=${this.symbols.map(encodeURIComponent).join(",")}&kinds=${KINDS}`
      const headers: Record<string, string> = { accept: "text/event-stream", ...authHeaders() }
      if (this.lastEventId !== "") headers["last-event-id"] = this.lastEventId
      watch()
      const response = await fetch(`/stream?${query}`, { headers, cache: "no-store", signal: controller.signal })
      if (response.status === 401) {
        await response.body?.cancel().catch(() => undefined)
        reportUnauthorized()
        return { outcome: "unauthorized", lastedMs: 0 }
      }
      const type = response.headers.get("content-type") ?? ""
      if ([404, 405, 501].includes(response.status) || (response.ok && !type.includes("text/event-stream"))) {
        await response.body?.cancel().catch(() => undefined)
        return { outcome: "unsupported", lastedMs: 0 }
      }
      if (!response.ok || response.body === null) {
        await response.body?.cancel().catch(() => undefined)
        return { outcome: "ended", lastedMs: 0 }
      }
      this.handlers.mode("stream", "GET /stream (server-sent events)")
      const parser = new SseParser()
      parser.lastEventId = this.lastEventId
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
      for (;;) {
        watch()
        const { done, value } = await reader.read()
        if (done) break
        for (const event of parser.push(value)) {
          this.lastEventId = event.id
          this.dispatch(event.event, event.data)
        }
        this.lastEventId = parser.lastEventId
        this.retryMs = parser.retryMs
      }
    } catch {
      // cut, silent too long, or stopped: reconnect (or stop) below
    } finally {
      clearTimeout(silence)
      this.signal.removeEventListener("abort", stop)
    }
    return { outcome: "ended", lastedMs: Date.now() - started }
  }

  async run(): Promise<void> {
    this.handlers.mode("connecting", "first poll")
    if ((await this.pollOnce()) === "unauthorized") return this.needKey()
    let backoff = BACKOFF_MIN_MS
    while (!this.signal.aborted) {
      const { lastedMs, outcome } = await this.streamOnce()
      if (this.signal.aborted) return
      if (outcome === "unauthorized") return this.needKey()
      if (outcome === "unsupported") {
        const polled = await this.pollFor(STREAM_PROBE_MS, "polling", "this server has no /stream: polling every 2 s")
        if (polled === "unauthorized") return this.needKey()
        continue
      }
      if (lastedMs > 10_000) backoff = BACKOFF_MIN_MS
      const wait = Math.max(backoff, this.retryMs ?? 0)
      backoff = Math.min(BACKOFF_MAX_MS, backoff * 2)
      const polled = await this.pollFor(wait, "reconnecting", `the stream was cut: polling, reconnecting in ${Math.round(wait / 1000)} s`)
      if (polled === "unauthorized") return this.needKey()
    }
  }

  private needKey() {
    this.handlers.mode("key needed", apiKey.get() === "" ? "enter an API key" : "the API key was refused")
  }
}

/** Feeds `handlers` with the new events of `symbols` until `signal` aborts (or the API wants a key). */
export const startLive = (symbols: ReadonlyArray<string>, handlers: LiveHandlers, signal: AbortSignal): Promise<void> =>
  new Feed(symbols, handlers, signal).run()
