import { NodeContext } from "@effect/platform-node"
import { Clock, Context, Data, Deferred, Duration, Effect, Fiber, Layer, Option } from "effect"
import * as AppConfig from "../Config.js"
import { healthListeningServer, listeningServer } from "../api/NodeServer.js"
import { SecurityConfig } from "../api/Security.js"
import { BinanceClient } from "../binance/BinanceClient.js"
import { RateLimitStoreLive } from "../binance/RateLimitStore.js"
import { BarBroker, Broker, TradeBroker } from "../broker/Broker.js"
import { DirectBarBrokerLive, DirectBrokerLive, DirectTradeBrokerLive } from "../broker/DirectBroker.js"
import { KafkaBarBrokerLive, KafkaBrokerLive, KafkaTradeBrokerLive } from "../broker/kafka/KafkaBroker.js"
import { Health } from "../status/Health.js"
import { Metrics } from "../status/Metrics.js"
import { StatusProbesLive } from "../status/StatusProbes.js"
import { makeJsonlSink } from "../store/JsonlSink.js"
import { makeSqliteSink } from "../store/SqliteSink.js"
import { StoreLive } from "../store/Store.js"
import { BarSink, fanOut, TickSink, TradeSink } from "../store/TickSink.js"
import { makeBarSink, makeJsonlTradeSink, makeSqliteTradeSink } from "../store/TradeSinks.js"
import { runConsumer, runStreamConsumer } from "./Consumer.js"
import { runRepair } from "./Repair.js"
import { MarketSource } from "../market/MarketSource.js"
import { PollSourceLive } from "../market/PollSource.js"
import { listReplayFiles, ReplaySourceLive } from "../market/ReplaySource.js"
import { SimSourceLive } from "../market/SimSource.js"
import { StreamSourceLive } from "../market/StreamSource.js"
import { StopRequested } from "./Shutdown.js"

export const roles = ["all", "producer", "consumer", "api"] as const
export type Role = (typeof roles)[number]

/** A role that cannot start as configured; the message says why and what to do. */
export class StartupError extends Data.TaggedError("StartupError")<{ readonly message: string }> {}

/** The HTTP server could not listen: say where and what to change. */
const cannotListen = (error: { readonly cause: unknown }, variable: string, port: number, host: string) => {
  const code = (error.cause as { code?: string } | undefined)?.code
  const reason =
    code === "EADDRINUSE"
      ? "the port is already in use"
      : code === "EACCES"
        ? "this user may not listen on that port"
        : String((error.cause as Error | undefined)?.message ?? error.cause)
  return new StartupError({
    message: `cannot listen on ${host}:${port} (${variable}): ${reason}; stop the other process or set ${variable} to another port.`
  })
}

/**
 * Shutdown deadlines, together under the 5 s an orchestrator usually grants after SIGTERM: a poll in
 * flight may finish and publish for PRODUCER_GRACE; the consumer may store and acknowledge what it
 * holds until DRAIN_DEADLINE after the stop began. The HTTP server closes meanwhile (NodeServer.ts).
 */
const PRODUCER_GRACE = Duration.seconds(1)
const DRAIN_DEADLINE = Duration.seconds(3)

const BrokerLive = Layer.unwrapEffect(
  Effect.gen(function* () {
    const mode = yield* AppConfig.brokerMode
    if (mode === "kafka") return KafkaBrokerLive
    const health = yield* Health
    return Layer.effectDiscard(health.setBroker("up", "direct", "in-process queue")).pipe(
      Layer.provideMerge(DirectBrokerLive)
    )
  })
)

/** Whether trades and bars flow: from Binance's streams, or from the simulated market. */
const tradesFlow = (source: AppConfig.MarketSourceName) => AppConfig.streams(source) || source === "sim"

/**
 * The trade and bar channels: Kafka topics when trades flow in Kafka mode; otherwise in-process
 * queues (cheap, and idle when nothing streams).
 */
const StreamBrokersLive = Layer.unwrapEffect(
  Effect.gen(function* () {
    const kafka = (yield* AppConfig.brokerMode) === "kafka" && tradesFlow(yield* AppConfig.source)
    return kafka ? Layer.merge(KafkaTradeBrokerLive, KafkaBarBrokerLive) : Layer.merge(DirectTradeBrokerLive, DirectBarBrokerLive)
  })
)

/** Trades into SQLite (unless ENABLE_DB_SINK=false) and `RAW_DIR/trades/`; closed bars into the candles. */
const StreamSinksLive = Layer.merge(
  Layer.effect(
    TradeSink,
    Effect.gen(function* () {
      const health = yield* Health
      const sinks = (yield* AppConfig.enableDbSink) ? [yield* makeSqliteTradeSink] : []
      sinks.push(yield* makeJsonlTradeSink(yield* AppConfig.rawDir))
      return fanOut(sinks, health.sinkResult)
    })
  ),
  Layer.effect(
    BarSink,
    Effect.gen(function* () {
      if (yield* AppConfig.enableDbSink) return yield* makeBarSink
      return BarSink.of({ name: "none", writeBatch: () => Effect.void })
    })
  )
)

/** SQLite (unless ENABLE_DB_SINK=false) and the JSONL raw log, as one sink. */
const SinkLive = Layer.effect(
  TickSink,
  Effect.gen(function* () {
    const health = yield* Health
    const sinks = (yield* AppConfig.enableDbSink) ? [yield* makeSqliteSink] : []
    sinks.push(yield* makeJsonlSink(yield* AppConfig.rawDir))
    return fanOut(sinks, health.sinkResult)
  })
)

const ServerLive = Layer.unwrapEffect(
  Effect.gen(function* () {
    const port = yield* AppConfig.port
    const host = yield* AppConfig.host
    return listeningServer({ port, host })
  })
)

/** GET /health for a producer or consumer process, when HEALTH_PORT is set. */
const healthLoop = Effect.gen(function* () {
  const port = yield* AppConfig.healthPort
  if (Option.isNone(port)) return yield* Effect.never
  const host = yield* AppConfig.host
  return yield* Layer.launch(healthListeningServer({ port: port.value, host })).pipe(
    Effect.catchTag("ServeError", (e) => Effect.fail(cannotListen(e, "HEALTH_PORT", port.value, host)))
  )
})

/** Binance's Retry-After is kept beside the data, so a restart never sends a request during a ban. */
export const BinanceLive = BinanceClient.Default.pipe(Layer.provide(RateLimitStoreLive))

/** SOURCE=both: the REST ticker poll and the WebSocket streams, side by side. */
const BothSourcesLive = Layer.scoped(
  MarketSource,
  Effect.gen(function* () {
    const poll = Context.get(yield* Layer.build(PollSourceLive), MarketSource)
    const stream = Context.get(yield* Layer.build(StreamSourceLive), MarketSource)
    return MarketSource.of({ name: "both", run: Effect.all([poll.run, stream.run], { concurrency: "unbounded", discard: true }) })
  })
)

/** Where events come from (SOURCE): Binance's REST tickers, a simulated market, or recorded day files. */
const SourceLive = Layer.unwrapEffect(
  Effect.map(AppConfig.source, (source) => {
    switch (source) {
      case "poll":
        return PollSourceLive
      case "stream":
        return StreamSourceLive
      case "both":
        return BothSourcesLive
      case "sim":
        return SimSourceLive
      case "replay":
        return ReplaySourceLive.pipe(Layer.provide(NodeContext.layer))
    }
  })
)

/** The producer loop: the configured source, publishing until it ends or a stop is requested. */
const runSource = Effect.flatMap(MarketSource, (source) => source.run)


/**
 * A role's layer with its /metrics: the Metrics service under everything (so every part built from
 * `layer` counts into it), and the scrape-time probes of /health's state and the store over it all.
 */
const withMetrics = <A, E, R>(layer: Layer.Layer<A, E, R>) =>
  StatusProbesLive.pipe(Layer.provideMerge(layer), Layer.provideMerge(Metrics.Default))

type Loop = Effect.Effect<unknown, unknown, unknown>

/**
 * What could not be stored before the deadline, in one line saying whether it is lost or comes back:
 * a publish the producer was cut off in, and, when the consumer did not drain, what it holds and what
 * still waits for it in the broker.
 */
const reportUnstored = (consumerDrained: boolean) =>
  Effect.gen(function* () {
    const health = yield* Health
    const kafka = (yield* Effect.orDie(AppConfig.brokerMode)) === "kafka" // validated at start-up
    const unpublished = yield* health.producerUnpublished
    let pending = 0
    for (const channel of yield* channels) pending += yield* channel.pending
    const waiting = consumerDrained ? 0 : (yield* health.consumerHeld) + pending
    if (unpublished + waiting === 0) return
    const failing = (yield* health.sinks).flatMap((s) => (s.state === "down" && s.detail !== null ? [s.detail] : []))
    const why = failing.length > 0 ? ` (${failing.join("; ")})` : ""
    const fate = kafka
      ? `they stay uncommitted in Kafka and are delivered again on the next start${unpublished > 0 ? `, except ${unpublished} polled event(s) not yet handed to Kafka, which are lost` : ""}`
      : "the in-process queue ends with the process, so they are lost"
    yield* Effect.logError(`shutdown: ${unpublished + waiting} event(s) could not be stored in time${why}; ${fate}`)
  })

/** The broker channels of this process (ticks, and trades and bars where they flow). */
type Closable = { readonly close: Effect.Effect<void>; readonly pending: Effect.Effect<number> }
const channels = Effect.map(
  Effect.all([
    Effect.serviceOption(Broker) as Effect.Effect<Option.Option<Closable>>,
    Effect.serviceOption(TradeBroker) as Effect.Effect<Option.Option<Closable>>,
    Effect.serviceOption(BarBroker) as Effect.Effect<Option.Option<Closable>>
  ]),
  (found) => found.flatMap((c) => (Option.isSome(c) ? [c.value] : []))
)

/** Waits for `fiber` for at most `millis`; false when it is still running then. */
const awaitFor = (fiber: Fiber.RuntimeFiber<unknown, unknown>, millis: number) =>
  // Finalizers are uninterruptible: the wait must be made interruptible for its timeout to cut it.
  Fiber.await(fiber).pipe(Effect.interruptible, Effect.timeout(Duration.millis(millis)), Effect.option, Effect.map(Option.isSome))

/**
 * Runs the role's loops until one fails or the process is told to stop. Stopping is ordered and
 * bounded: the HTTP server starts closing; the producer ends after its cycle in flight (at most
 * PRODUCER_GRACE); the broker is closed so the consumer drains and acknowledges what it has (until
 * DRAIN_DEADLINE); what is still unstored then is said in one line, and what is left is interrupted
 * without waiting for it (a write hung in the kernel cannot hold the process).
 */
const runLoops = <P extends Loop = never, C extends Loop = never, A extends Loop = never, B extends Loop = never>(loops: {
  readonly producer?: P
  readonly consumer?: C
  readonly api?: A
  /** Work that stops at once on a stop (gap repair): nothing of it is in flight between steps. */
  readonly background?: B | undefined
  /** Stop (in the same order as for a signal) once the producer loop returns by itself. */
  readonly untilProducerEnds?: boolean
}): Effect.Effect<void, Effect.Effect.Error<P | C | A | B>, Effect.Effect.Context<P | C | A | B> | Health> =>
  Effect.scoped(
    Effect.gen(function* () {
      const stop = yield* Deferred.make<void>()
      const consumer = loops.consumer && (yield* Effect.forkScoped(loops.consumer))
      const producer = loops.producer && (yield* Effect.forkScoped(Effect.provideService(loops.producer, StopRequested, stop)))
      const api = loops.api && (yield* Effect.forkScoped(loops.api))
      const background = loops.background && (yield* Effect.forkScoped(loops.background))
      yield* Effect.addFinalizer(() =>
        Effect.gen(function* () {
          const started = yield* Clock.currentTimeMillis
          yield* Deferred.succeed(stop, undefined)
          if (background) yield* Fiber.interruptFork(background)
          const closingApi = api ? yield* Effect.fork(Fiber.interrupt(api)) : undefined
          if (producer && !(yield* awaitFor(producer, Duration.toMillis(PRODUCER_GRACE)))) {
            yield* Effect.logWarning("the poll in flight did not finish in time; stopping the producer")
            yield* Fiber.interruptFork(producer)
          }
          for (const channel of yield* channels) yield* channel.close
          let drained = true
          if (consumer) {
            const left = Math.max(0, Duration.toMillis(DRAIN_DEADLINE) - ((yield* Clock.currentTimeMillis) - started))
            drained = yield* awaitFor(consumer, left)
          }
          yield* reportUnstored(drained)
          if (consumer && !drained) yield* Fiber.interruptFork(consumer)
          if (closingApi) yield* Fiber.join(closingApi)
          yield* Effect.logInfo("stopped")
        })
      )
      const fibers = [consumer, producer, api, background].filter((f) => f !== undefined)
      const all = Effect.all(fibers.map(Fiber.join), { concurrency: "unbounded", discard: true })
      if (loops.untilProducerEnds && producer) {
        yield* Effect.raceFirst(all, Fiber.join(producer))
        yield* Effect.logInfo("the source has ended; stopping")
      } else yield* all
    })
  ) as never

/** The effect that runs `role` with the adapters the configuration selects. */
export const runRole = (role: Role) =>
  Effect.gen(function* () {
    yield* AppConfig.validateAll
    yield* SecurityConfig
    const mode = yield* AppConfig.brokerMode
    if (mode === "direct" && (role === "producer" || role === "consumer")) {
      return yield* new StartupError({
        message: `--role=${role} needs BROKER_MODE=kafka: in direct mode the broker is an in-process queue, so run --role=all, or set BROKER_MODE=kafka and KAFKA_BOOTSTRAP_SERVERS.`
      })
    }
    const source = yield* AppConfig.source
    const sourcing = role === "all" || role === "producer"
    // Before any storage is opened or created: a replay with nothing to replay is one line and exit 1.
    if (sourcing && source === "replay") {
      yield* listReplayFiles(yield* AppConfig.replayDir).pipe(Effect.provide(NodeContext.layer))
    }
    yield* Effect.logInfo(`starting role ${role} with BROKER_MODE=${mode}${sourcing ? ` and SOURCE=${source}` : ""}`)
    const api = Layer.launch(ServerLive).pipe(
      Effect.catchTag("ServeError", (e) =>
        Effect.flatMap(Effect.all([AppConfig.port, AppConfig.host]), ([port, host]) =>
          Effect.fail(cannotListen(e, "PORT", port, host))
        )
      )
    )
    // Trades and bars have their own consumer loop beside the ticks'; the gap repair runs where they are stored.
    const consumer = tradesFlow(source)
      ? Effect.all([runConsumer, runStreamConsumer], { concurrency: "unbounded", discard: true })
      : runConsumer
    const repair = AppConfig.streams(source) ? runRepair : undefined
    switch (role) {
      case "all":
        return yield* runLoops({ producer: runSource, consumer, api, background: repair }).pipe(
          Effect.provide(
            withMetrics(
              SourceLive.pipe(
                Layer.provideMerge(Layer.mergeAll(SinkLive, BrokerLive, StreamSinksLive, StreamBrokersLive, BinanceLive)),
                Layer.provideMerge(StoreLive),
                Layer.provideMerge(Health.Default)
              )
            )
          )
        )
      case "producer":
        // A finite source (replay) ends the producer process once everything is handed to Kafka.
        return yield* runLoops({ producer: runSource, api: healthLoop, untilProducerEnds: true }).pipe(
          Effect.provide(
            withMetrics(
              SourceLive.pipe(Layer.provideMerge(Layer.mergeAll(BrokerLive, StreamBrokersLive, BinanceLive)), Layer.provideMerge(Health.Default))
            )
          )
        )
      case "consumer":
        return yield* runLoops({ consumer, api: healthLoop, background: repair }).pipe(
          Effect.provide(
            withMetrics(
              Layer.mergeAll(SinkLive, BrokerLive, StreamSinksLive, StreamBrokersLive, BinanceLive).pipe(
                Layer.provideMerge(StoreLive),
                Layer.provideMerge(Health.Default)
              )
            )
          )
        )
      case "api":
        return yield* runLoops({ api }).pipe(Effect.provide(withMetrics(StoreLive.pipe(Layer.provideMerge(Health.Default)))))
    }
  })
