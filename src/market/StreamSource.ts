import { Deferred, Duration, Effect, Fiber, Layer, Option, Queue } from "effect"
import { BarBroker, TradeBroker } from "../broker/Broker.js"
import * as AppConfig from "../Config.js"
import type { Candle } from "../domain/Candles.js"
import { decodeStreamMessage, streamGroups } from "../domain/StreamMessage.js"
import type { Trade } from "../domain/Trade.js"
import { Health, type StreamConnectionHealth } from "../status/Health.js"
import { barLabels, Metrics, tradeLabels } from "../status/Metrics.js"
import { MarketSource, stopSignal, watchedPublishTo } from "./MarketSource.js"
import { type Connection, type ConnectionEvent, openConnection } from "./stream/Connection.js"
import { AttemptLimiter, backoffMs, REJECTED_RETRY_MS } from "./stream/Reconnect.js"

/** How often the supervisor looks at its connections' clocks (staleness, renewal, retries, /health). */
const TICK_MS = 250
/** Trades (and bars) received and not yet taken by the broker; beyond it they are dropped and repaired later. */
const BUFFER = 100_000
const PUBLISH_BATCH = 2_000

interface Conn {
  readonly id: number
  readonly handle: Connection
  readonly openedAt: number
  open: boolean
  /** Epoch ms of the last data message; 0 before the first. */
  lastDataAt: number
}

/** One group of streams (at most 1,024) and the connection(s) carrying it: two while one is renewed. */
interface Slot {
  readonly name: string
  readonly url: string
  readonly streams: number
  active: Conn | undefined
  /** The connection that replaces `active` once it carries data (make before break). */
  renewal: Conn | undefined
  renewalReason: string
  failures: number
  nextAttemptAt: number
  reconnects: number
  connectedSince: number
  lastDataAt: number
  state: StreamConnectionHealth["state"]
  detail: string | null
  /** Whether the refusal (451) was said already: one line per episode, not one per attempt. */
  rejectionSaid: boolean
}

type Signal = { readonly slot: Slot; readonly conn: Conn; readonly event: ConnectionEvent | { readonly _tag: "shutdown" } }

/**
 * `SOURCE=stream` (and the stream half of `both`): Binance's combined WebSocket streams, per symbol
 * `<symbol>@aggTrade` and `<symbol>@kline_1m`, on as few connections as the 1,024-stream limit allows.
 * Trades go to the TradeBroker (once each: a renewal's overlap is dropped here by id), closed 1m bars to
 * the BarBroker. Each connection is watched: no data for STREAM_STALE_SECONDS → replaced; renewed after
 * STREAM_RENEW_SECONDS or on `serverShutdown`, the old one closed once the new one carries data; lost
 * ones retried with capped exponential backoff and jitter, never more than 300 attempts per 5 minutes;
 * a 451 handshake retried at most once a minute. Gaps are found and repaired where trades are stored
 * (TradeWriter, app/Repair), so nothing here has to be perfect: a dropped trade is repaired.
 */
const runStream = Effect.gen(function* () {
  const health = yield* Health
  const publishTrades = yield* watchedPublishTo(yield* TradeBroker, tradeLabels)
  const publishBars = yield* watchedPublishTo(yield* BarBroker, barLabels)
  const metrics = Option.getOrUndefined(yield* Effect.serviceOption(Metrics))
  const symbols = yield* AppConfig.symbols
  const origin = yield* AppConfig.binanceWsUrl
  const staleMs = Duration.toMillis(yield* AppConfig.streamStale)
  const renewMs = Duration.toMillis(yield* AppConfig.streamRenew)
  const stop = yield* stopSignal

  const trades = yield* Queue.bounded<Trade>(BUFFER)
  const bars = yield* Queue.bounded<Candle>(BUFFER)
  const signals = yield* Queue.unbounded<Signal>()
  /** The newest trade id handed on per symbol: a repeat (the overlap of a renewal) is not handed on again. */
  const lastForwarded = new Map<string, number>()
  /** Reasons of messages not of the documented shape, said once each by the supervisor loop. */
  const invalidSeen = new Set<string>()
  const invalidSaid = new Set<string>()
  let dropped = 0
  const limiter = new AttemptLimiter()
  let connIds = 0

  const slots: Array<Slot> = streamGroups(symbols).map((streams, i) => ({
    name: `binance-ws-${i + 1}`,
    url: `${origin}/stream?streams=${streams.join("/")}`,
    streams: streams.length,
    active: undefined,
    renewal: undefined,
    renewalReason: "",
    failures: 0,
    nextAttemptAt: 0,
    reconnects: 0,
    connectedSince: 0,
    lastDataAt: 0,
    state: "connecting",
    detail: null,
    rejectionSaid: false
  }))

  /** Data messages are handled in the socket's callback, synchronously: decode once, hand on, note the time. */
  const onMessage = (slot: Slot, conn: Conn, text: string) => {
    const message = decodeStreamMessage(text)
    if (message._tag === "invalid") {
      invalidSeen.add(message.reason)
      return
    }
    if (message._tag === "shutdown") {
      Queue.unsafeOffer(signals, { slot, conn, event: message })
      return
    }
    const now = Date.now()
    const first = conn.lastDataAt === 0
    conn.lastDataAt = now
    slot.lastDataAt = now
    if (first) Queue.unsafeOffer(signals, { slot, conn, event: { _tag: "message", text: "" } })
    if (message._tag === "trade") {
      const { trade } = message
      if (trade.id <= (lastForwarded.get(trade.symbol) ?? -1)) return
      lastForwarded.set(trade.symbol, trade.id)
      if (!Queue.unsafeOffer(trades, trade)) dropped++
    } else if (message._tag === "bar") {
      if (!Queue.unsafeOffer(bars, message.bar)) dropped++
    }
  }

  const connect = (slot: Slot, now: number): Conn => {
    limiter.record(now)
    const id = ++connIds
    const conn: Conn = {
      id,
      openedAt: now,
      open: false,
      lastDataAt: 0,
      handle: openConnection(slot.url, (event) => {
        if (event._tag === "message") onMessage(slot, conn, event.text)
        else Queue.unsafeOffer(signals, { slot, conn, event })
      })
    }
    return conn
  }

  /** After a failed attempt or a lost connection: when to try again. */
  const scheduleRetry = (slot: Slot, now: number, minimumMs = 0) => {
    slot.nextAttemptAt = now + Math.max(minimumMs, backoffMs(slot.failures, Math.random()))
    slot.failures++
  }

  const startRenewal = (slot: Slot, now: number, reason: string) =>
    Effect.suspend(() => {
      if (slot.renewal !== undefined) return Effect.void
      slot.renewalReason = reason
      slot.renewal = connect(slot, now)
      return Effect.logInfo(`renewing the connection (${reason}): opening a new one first`)
    })

  const handle = (signal: Signal, now: number) =>
    Effect.gen(function* () {
      const { conn, event, slot } = signal
      const isActive = slot.active === conn
      const isRenewal = slot.renewal === conn
      if (!isActive && !isRenewal) return // a connection already replaced
      switch (event._tag) {
        case "open":
          conn.open = true
          if (isActive) yield* Effect.logInfo(`connected to ${origin} (${slot.streams} streams)`)
          return
        case "message": // the first data message of a connection: it is alive
          slot.failures = 0
          if (isRenewal) {
            // Make before break: the new connection carries data, so the old one is closed by us.
            slot.active?.handle.close()
            slot.active = conn
            slot.renewal = undefined
            yield* Effect.logInfo(`renewed (${slot.renewalReason}); the old connection is closed`)
          }
          slot.state = "connected"
          slot.detail = null
          slot.connectedSince = conn.openedAt
          slot.rejectionSaid = false
          return
        case "shutdown":
          if (isActive) {
            yield* Effect.logWarning("Binance announced serverShutdown; renewing the connection now")
            yield* startRenewal(slot, now, "serverShutdown")
          }
          return
        case "rejected": {
          const restricted = event.status === 451
          const reason = restricted
            ? `Binance refused the WebSocket handshake with HTTP 451 (restricted location) at BINANCE_WS_URL=${origin}: set BINANCE_WS_URL to an endpoint that serves your location (e.g. wss://data-stream.binance.vision); retrying at most once a minute`
            : `the WebSocket handshake at BINANCE_WS_URL=${origin} was answered with HTTP ${event.status}`
          if (isRenewal) slot.renewal = undefined
          else slot.active = undefined
          if (!slot.rejectionSaid || !restricted) yield* Effect.logError(reason)
          slot.rejectionSaid = restricted
          if (isActive || slot.active === undefined) {
            slot.state = restricted ? "rejected" : "reconnecting"
            slot.detail = reason
          }
          scheduleRetry(slot, now, restricted ? REJECTED_RETRY_MS : 0)
          return
        }
        case "closed":
          if (isRenewal) {
            slot.renewal = undefined
            yield* Effect.logWarning(`the renewal connection failed (${event.detail}); the current one stays`)
            scheduleRetry(slot, now)
            // the renewal is tried again at the next attempt time (see tick)
            return
          }
          slot.active = undefined
          slot.reconnects++
          metrics?.streamReconnect(slot.name)
          if (slot.state !== "rejected") {
            slot.state = "reconnecting"
            slot.detail = `connection lost: ${event.detail}`
          }
          yield* Effect.logWarning(`connection lost (${event.detail}); reconnecting`).pipe(Effect.annotateLogs({ connection: slot.name }))
          // A renewal already on its way takes over; otherwise a new attempt after the backoff.
          if (slot.renewal !== undefined) {
            slot.active = slot.renewal
            slot.renewal = undefined
          } else scheduleRetry(slot, now)
          return
      }
    }).pipe(Effect.annotateLogs({ connection: signal.slot.name }))

  /** Time-driven rules of one slot: staleness, renewal, retries; then its /health entry. */
  const tick = (slot: Slot, now: number) =>
    Effect.gen(function* () {
      const active = slot.active
      if (active !== undefined) {
        const silentFor = now - (active.lastDataAt || active.openedAt)
        if (silentFor >= staleMs) {
          yield* Effect.logWarning(`no data for ${Math.round(silentFor / 1000)} s (STREAM_STALE_SECONDS); reconnecting`)
          active.handle.terminate()
          slot.active = undefined
          slot.reconnects++
          metrics?.streamReconnect(slot.name)
          slot.state = "reconnecting"
          slot.detail = `no data for ${Math.round(silentFor / 1000)} s`
          scheduleRetry(slot, now)
        } else if (active.open && slot.renewal === undefined && now - active.openedAt >= renewMs && now >= slot.nextAttemptAt) {
          if (limiter.nextAllowed(now) <= now) yield* startRenewal(slot, now, "STREAM_RENEW_SECONDS reached")
        }
      }
      if (slot.active === undefined && now >= slot.nextAttemptAt) {
        const allowed = limiter.nextAllowed(now)
        if (allowed > now) {
          slot.nextAttemptAt = allowed
          yield* Effect.logWarning(`300 connection attempts in 5 minutes: the next one waits until ${new Date(allowed).toISOString()}`)
        } else if (slot.renewal !== undefined) {
          slot.active = slot.renewal
          slot.renewal = undefined
        } else slot.active = connect(slot, now)
      }
      yield* health.streamConnection(slot.name, () => ({
        name: slot.name,
        state: slot.state,
        streams: slot.streams,
        connected_since: slot.state === "connected" ? new Date(slot.connectedSince).toISOString() : null,
        last_message_at_ms: slot.lastDataAt,
        reconnects: slot.reconnects,
        detail: slot.detail
      }))
    }).pipe(Effect.annotateLogs({ connection: slot.name }))

  /** Hands what arrived to the brokers in batches until `done`, then what is left. */
  const publisher = <A>(queue: Queue.Queue<A>, publish: (values: ReadonlyArray<A>) => Effect.Effect<void, unknown>, done: Deferred.Deferred<void>) =>
    Effect.gen(function* () {
      while (true) {
        const batch = yield* Effect.raceFirst(
          Effect.map(Queue.takeBetween(queue, 1, PUBLISH_BATCH), Option.some),
          Effect.as(Deferred.await(done), Option.none())
        )
        if (Option.isNone(batch)) break
        yield* publish([...batch.value])
      }
      const rest = yield* Queue.takeAll(queue)
      if (rest.length > 0) yield* publish([...rest])
    }).pipe(Effect.catchAllCause((cause) => Effect.logError("handing stream events to the broker failed", cause)))

  const done = yield* Deferred.make<void>()
  const publishers = yield* Effect.all(
    [Effect.fork(publisher(trades, publishTrades, done)), Effect.fork(publisher(bars, publishBars, done))],
    { concurrency: "unbounded" }
  )
  yield* Effect.logInfo(`streaming trades and 1m bars of ${symbols.length} symbol(s) from ${origin} on ${slots.length} connection(s)`)

  let droppedSaid = 0
  while (!(yield* stop.requested)) {
    const first = yield* Effect.raceFirst(Effect.map(Queue.take(signals), Option.some), Effect.as(stop.pause(TICK_MS), Option.none()))
    const now = Date.now()
    const pending = Option.isSome(first) ? [first.value, ...(yield* Queue.takeAll(signals))] : []
    for (const signal of pending) yield* handle(signal, now)
    for (const slot of slots) yield* tick(slot, now)
    for (const reason of invalidSeen) {
      if (invalidSaid.has(reason)) continue
      invalidSaid.add(reason)
      yield* Effect.logWarning(`ignored ${reason}`)
    }
    if (dropped > droppedSaid) {
      yield* Effect.logWarning(`${dropped - droppedSaid} stream event(s) dropped: the broker does not take them fast enough; the missing trades are repaired from REST`)
      metrics?.streamDropped(dropped - droppedSaid)
      droppedSaid = dropped
    }
  }
  for (const slot of slots) {
    slot.renewal?.handle.close()
    slot.active?.handle.close()
  }
  yield* Deferred.succeed(done, undefined)
  yield* Fiber.joinAll(publishers)
  yield* Effect.logInfo("stream stopped")
}).pipe(Effect.annotateLogs({ service: "stream" }))

/** `SOURCE=stream`: Binance's WebSocket trades and 1m bars. */
export const StreamSourceLive = Layer.effect(
  MarketSource,
  Effect.map(Effect.context<TradeBroker | BarBroker | Health>(), (context) =>
    MarketSource.of({ name: "stream", run: runStream.pipe(Effect.provide(context), Effect.orDie) })
  )
)
