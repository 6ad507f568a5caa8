import { Clock, Effect, Ref } from "effect"
import { isoInstant } from "../domain/Time.js"

/**
 * The state of one part of the running platform, as /health reports it. `blocked`: the producer has
 * events in hand that the broker does not take (backpressure: the store behind it is failing or slow).
 */
export type ComponentState = "up" | "down" | "blocked" | "starting" | "not_running"

export interface ProducerHealth {
  readonly state: ComponentState
  readonly symbols: ReadonlyArray<string>
  readonly last_success_at: string | null
  readonly last_error: string | null
  readonly last_error_at: string | null
  readonly used_weight_1m: number | null
  /** No request leaves for Binance before this instant (Retry-After of a 429 or 418), or null. */
  readonly rate_limited_until: string | null
}

export interface BrokerHealth {
  readonly state: ComponentState
  readonly mode: string
  readonly detail: string | null
}

/** One sink of the consumer (SQLite, JSONL) as its last write left it. */
export interface SinkHealth {
  readonly name: string
  readonly state: "up" | "down"
  /** Why the last write failed; null while up. */
  readonly detail: string | null
  /** When the current state began. */
  readonly since: string
  readonly last_success_at: string | null
}

/** One WebSocket connection of the stream source, as /health reports it. */
export interface StreamConnectionHealth {
  readonly name: string
  readonly state: "connecting" | "connected" | "reconnecting" | "rejected"
  readonly streams: number
  readonly connected_since: string | null
  /** Epoch ms of the last data message (pings are not data); 0 before the first. */
  readonly last_message_at_ms: number
  readonly reconnects: number
  readonly detail: string | null
}

/**
 * Shared, in-process view of the producer's, the broker's and the sinks' condition. The roles write
 * it; the API reads it. In a process that does not run a part it says so instead of guessing.
 */
export class Health extends Effect.Service<Health>()("status/Health", {
  effect: Effect.gen(function* () {
    const producer = yield* Ref.make<ProducerHealth>({
      state: "not_running",
      symbols: [],
      last_success_at: null,
      last_error: null,
      last_error_at: null,
      used_weight_1m: null,
      rate_limited_until: null
    })
    const broker = yield* Ref.make<BrokerHealth>({ state: "not_running", mode: "none", detail: null })
    const sinks = yield* Ref.make<ReadonlyMap<string, SinkHealth>>(new Map())
    /** Newest `timestamp_utc` (µs) among the events this process stored; 0 before the first. */
    const newestStored = yield* Ref.make(0)
    /** Events the consumer received and has not acknowledged yet (in a batch, or being stored). */
    const holding = yield* Ref.make(0)
    /** Events the producer is handing to the broker right now. */
    const publishing = yield* Ref.make(0)

    const streamConnections = yield* Ref.make<ReadonlyMap<string, StreamConnectionHealth>>(new Map())

    const sinkResult = (name: string, error: string | null) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Ref.update(sinks, (all) => {
          const prev = all.get(name)
          const state = error === null ? ("up" as const) : ("down" as const)
          const next: SinkHealth = {
            name,
            state,
            detail: error,
            since: prev !== undefined && prev.state === state ? prev.since : isoInstant(now),
            last_success_at: error === null ? isoInstant(now) : (prev?.last_success_at ?? null)
          }
          return new Map(all).set(name, next)
        })
      )

    return {
      producerStarting: (symbols: ReadonlyArray<string>) =>
        Ref.update(producer, (p) => ({ ...p, state: "starting" as const, symbols })),
      producerSymbols: (symbols: ReadonlyArray<string>) => Ref.update(producer, (p) => ({ ...p, symbols })),
      producerSucceeded: (usedWeight1m: number | null) =>
        Clock.currentTimeMillis.pipe(
          Effect.flatMap((now) =>
            Ref.update(producer, (p) => ({ ...p, state: "up" as const, last_success_at: isoInstant(now), used_weight_1m: usedWeight1m }))
          )
        ),
      producerFailed: (message: string) =>
        Clock.currentTimeMillis.pipe(
          Effect.flatMap((now) =>
            Ref.update(producer, (p) => ({ ...p, state: "down" as const, last_error: message, last_error_at: isoInstant(now) }))
          )
        ),
      /** The broker has not taken a publish for a while: the producer waits (backpressure). */
      producerBlocked: (message: string) =>
        Clock.currentTimeMillis.pipe(
          Effect.flatMap((now) =>
            Ref.update(producer, (p) => ({ ...p, state: "blocked" as const, last_error: message, last_error_at: isoInstant(now) }))
          )
        ),
      /** Binance's Retry-After end (epoch ms; 0 or past: none). */
      producerRateLimitedUntil: (untilMs: number) =>
        Clock.currentTimeMillis.pipe(
          Effect.flatMap((now) =>
            Ref.update(producer, (p) => ({ ...p, rate_limited_until: untilMs > now ? isoInstant(untilMs) : null }))
          )
        ),
      setBroker: (state: ComponentState, mode: string, detail: string | null = null) =>
        Ref.set(broker, { state, mode, detail }),
      /** The outcome of one write of a batch to the sink `name`: null on success, else the reason. */
      sinkResult,
      /** Records the newest event instant (µs since the epoch) of a stored batch. */
      stored: (newestMicros: number) => Ref.update(newestStored, (n) => Math.max(n, newestMicros)),
      consumerHolding: (delta: number) => Ref.update(holding, (n) => n + delta),
      consumerHeld: Ref.get(holding),
      /** `delta` events more (or fewer, once taken) being handed to a broker: ticks, trades and bars publish side by side. */
      producerPublishing: (delta: number) => Ref.update(publishing, (n) => n + delta),
      producerUnpublished: Ref.get(publishing),
      producer: Ref.get(producer),
      broker: Ref.get(broker),
      sinks: Effect.map(Ref.get(sinks), (all) => [...all.values()]),
      newestStoredMicros: Ref.get(newestStored),
      /** The stream source's connections (empty where no stream runs). */
      streamConnection: (name: string, update: (previous: StreamConnectionHealth | undefined) => StreamConnectionHealth) =>
        Ref.update(streamConnections, (all) => new Map(all).set(name, update(all.get(name)))),
      streamConnections: Effect.map(Ref.get(streamConnections), (all) => [...all.values()])
    } as const
  })
}) {}
