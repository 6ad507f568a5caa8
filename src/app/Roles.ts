import { NodeContext, NodeHttpClient } from "@effect/platform-node"
import { Clock, Data, Deferred, Duration, Effect, Fiber, Layer, Option } from "effect"
import type { Interval } from "../domain/Candles.js"
import * as AppConfig from "../Config.js"
import { healthListeningServer, listeningServer } from "../api/NodeServer.js"
import { SecurityConfig } from "../api/Security.js"
import { BI_MAX_DAYS, BiReports } from "../bi/BiReports.js"
import { BinanceClient } from "../binance/BinanceClient.js"
import { RateLimitStoreLive } from "../binance/RateLimitStore.js"
import { Broker } from "../broker/Broker.js"
import { DirectBrokerLive } from "../broker/DirectBroker.js"
import { KafkaBrokerLive } from "../broker/kafka/KafkaBroker.js"
import { Health } from "../status/Health.js"
import { makeJsonlSink } from "../store/JsonlSink.js"
import { SqlForCommands, SqlLive } from "../store/Sql.js"
import { makeSqliteSink } from "../store/SqliteSink.js"
import { fanOut, TickSink } from "../store/TickSink.js"
import { TickRepo } from "../store/TickRepo.js"
import { TickWriter } from "../store/TickWriter.js"
import { CandleRepo } from "../store/CandleRepo.js"
import { BACKFILL_MAX_DAYS, runBackfill } from "./Backfill.js"
import { buildBiFiles, verifyBi } from "./BiCommands.js"
import { runConsumer } from "./Consumer.js"
import { MarketSource } from "../market/MarketSource.js"
import { PollSourceLive } from "../market/PollSource.js"
import { listReplayFiles, ReplaySourceLive } from "../market/ReplaySource.js"
import { SimSourceLive } from "../market/SimSource.js"
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

/** SQLite (unless ENABLE_DB_SINK=false) and the JSONL raw log, as one sink. */
const SinkLive = Layer.effect(
  TickSink,
  Effect.gen(function* () {
    const health = yield* Health
    const sinks = (yield* AppConfig.enableDbSink) ? [yield* makeSqliteSink] : []
    sinks.push(yield* makeJsonlSink(yield* AppConfig.rawDir))
    return fanOut(sinks, health.sinkResult)
  })
).pipe(Layer.provide(TickWriter.Default))

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
const BinanceLive = BinanceClient.Default.pipe(Layer.provide(RateLimitStoreLive))

/** Where events come from (SOURCE): Binance's REST tickers, a simulated market, or recorded day files. */
const SourceLive = Layer.unwrapEffect(
  Effect.map(AppConfig.source, (source) => {
    switch (source) {
      case "poll":
      case "both":
      case "stream":
        return PollSourceLive.pipe(Layer.provide(BinanceLive))
      case "sim":
        return SimSourceLive
      case "replay":
        return ReplaySourceLive.pipe(Layer.provide(NodeContext.layer))
    }
  })
)

/** The producer loop: the configured source, publishing until it ends or a stop is requested. */
const runSource = Effect.flatMap(MarketSource, (source) => source.run)

const StoreLive = Layer.merge(TickRepo.Default, CandleRepo.Default).pipe(Layer.provideMerge(SqlLive))

type Loop = Effect.Effect<unknown, unknown, unknown>

/**
 * What could not be stored before the deadline, in one line saying whether it is lost or comes back:
 * a publish the producer was cut off in, and, when the consumer did not drain, what it holds and what
 * still waits for it in the broker.
 */
const reportUnstored = (consumerDrained: boolean) =>
  Effect.gen(function* () {
    const health = yield* Health
    const broker = yield* Effect.serviceOption(Broker)
    const kafka = (yield* Effect.orDie(AppConfig.brokerMode)) === "kafka" // validated at start-up
    const unpublished = yield* health.producerUnpublished
    const waiting = consumerDrained ? 0 : (yield* health.consumerHeld) + (Option.isSome(broker) ? yield* broker.value.pending : 0)
    if (unpublished + waiting === 0) return
    const failing = (yield* health.sinks).flatMap((s) => (s.state === "down" && s.detail !== null ? [s.detail] : []))
    const why = failing.length > 0 ? ` (${failing.join("; ")})` : ""
    const fate = kafka
      ? `they stay uncommitted in Kafka and are delivered again on the next start${unpublished > 0 ? `, except ${unpublished} polled event(s) not yet handed to Kafka, which are lost` : ""}`
      : "the in-process queue ends with the process, so they are lost"
    yield* Effect.logError(`shutdown: ${unpublished + waiting} event(s) could not be stored in time${why}; ${fate}`)
  })

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
const runLoops = <P extends Loop = never, C extends Loop = never, A extends Loop = never>(loops: {
  readonly producer?: P
  readonly consumer?: C
  readonly api?: A
  /** Stop (in the same order as for a signal) once the producer loop returns by itself. */
  readonly untilProducerEnds?: boolean
}): Effect.Effect<void, Effect.Effect.Error<P | C | A>, Effect.Effect.Context<P | C | A> | Health> =>
  Effect.scoped(
    Effect.gen(function* () {
      const broker = yield* Effect.serviceOption(Broker)
      const stop = yield* Deferred.make<void>()
      const consumer = loops.consumer && (yield* Effect.forkScoped(loops.consumer))
      const producer = loops.producer && (yield* Effect.forkScoped(Effect.provideService(loops.producer, StopRequested, stop)))
      const api = loops.api && (yield* Effect.forkScoped(loops.api))
      yield* Effect.addFinalizer(() =>
        Effect.gen(function* () {
          const started = yield* Clock.currentTimeMillis
          yield* Deferred.succeed(stop, undefined)
          const closingApi = api ? yield* Effect.fork(Fiber.interrupt(api)) : undefined
          if (producer && !(yield* awaitFor(producer, Duration.toMillis(PRODUCER_GRACE)))) {
            yield* Effect.logWarning("the poll in flight did not finish in time; stopping the producer")
            yield* Fiber.interruptFork(producer)
          }
          if (Option.isSome(broker)) yield* broker.value.close
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
      const fibers = [consumer, producer, api].filter((f) => f !== undefined)
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
    switch (role) {
      case "all":
        return yield* runLoops({ producer: runSource, consumer: runConsumer, api }).pipe(
          Effect.provide(
            SourceLive.pipe(
              Layer.provideMerge(Layer.merge(SinkLive, BrokerLive)),
              Layer.provideMerge(StoreLive),
              Layer.provideMerge(Health.Default)
            )
          )
        )
      case "producer":
        // A finite source (replay) ends the producer process once everything is handed to Kafka.
        return yield* runLoops({ producer: runSource, api: healthLoop, untilProducerEnds: true }).pipe(
          Effect.provide(SourceLive.pipe(Layer.provideMerge(BrokerLive), Layer.provideMerge(Health.Default)))
        )
      case "consumer":
        return yield* runLoops({ consumer: runConsumer, api: healthLoop }).pipe(
          Effect.provide(Layer.mergeAll(SinkLive, BrokerLive).pipe(Layer.provideMerge(StoreLive), Layer.provideMerge(Health.Default)))
        )
      case "api":
        return yield* runLoops({ api }).pipe(Effect.provide(StoreLive.pipe(Layer.provideMerge(Health.Default))))
    }
  })

/** `backfill`: klines from Binance into the candle store, then exit. */
export const runBackfillCommand = (options: {
  readonly symbols: Option.Option<string>
  readonly days: number
  readonly interval: Interval
  readonly tty: boolean
}) =>
  Effect.gen(function* () {
    yield* AppConfig.validateAll
    const symbols = Option.isSome(options.symbols)
      ? AppConfig.parseSymbolList(options.symbols.value)
      : yield* AppConfig.symbols
    if (symbols === undefined) {
      return yield* new StartupError({
        message: `--symbols ${JSON.stringify(Option.getOrElse(options.symbols, () => ""))} is not valid: expected a comma-separated list of Binance symbols such as BTCUSDT,ETHUSDT.`
      })
    }
    if (!Number.isInteger(options.days) || options.days < 1 || options.days > BACKFILL_MAX_DAYS) {
      return yield* new StartupError({ message: `--days ${options.days} is not valid: expected a whole number from 1 to ${BACKFILL_MAX_DAYS}.` })
    }
    const stopped = (e: { readonly message: string }) =>
      Effect.fail(
        new StartupError({
          message: `backfill stopped: ${e.message}. What was fetched is stored; run the same command again to resume.`
        })
      )
    return yield* runBackfill({ symbols, days: options.days, interval: options.interval, tty: options.tty }).pipe(
      Effect.catchTags({
        RateLimited: stopped,
        RegionRestricted: stopped,
        InvalidSymbols: stopped,
        BinanceRejected: stopped,
        BinanceUnavailable: stopped,
        MalformedResponse: stopped
      }),
      Effect.provide(Layer.merge(BinanceLive, CandleRepo.Default).pipe(Layer.provideMerge(SqlForCommands)))
    )
  })

const BiLive = BiReports.Default.pipe(
  Layer.provideMerge(Layer.merge(TickRepo.Default, CandleRepo.Default)),
  Layer.provideMerge(SqlForCommands)
)

const checkDays = (days: number) =>
  Number.isInteger(days) && days >= 1 && days <= BI_MAX_DAYS
    ? Effect.void
    : Effect.fail(new StartupError({ message: `--days ${days} is not valid: expected a whole number from 1 to ${BI_MAX_DAYS}.` }))

/** `bi-build`: the BI CSVs of every configured symbol as static files. */
export const runBiBuildCommand = (options: { readonly dir: string; readonly days: number }) =>
  Effect.gen(function* () {
    yield* AppConfig.validateAll
    yield* checkDays(options.days)
    const symbols = yield* AppConfig.symbols
    yield* buildBiFiles({ dir: options.dir, days: options.days, symbols }).pipe(Effect.provide(BiLive))
  })

/** `verify-bi`: files in a directory, or a running server's endpoints, against the CSV contracts. */
export const runVerifyBiCommand = (options: {
  readonly dir: string
  readonly url: Option.Option<string>
  readonly apiKey: Option.Option<string>
  readonly days: number
}) =>
  Effect.gen(function* () {
    yield* AppConfig.validateAll
    yield* checkDays(options.days)
    const symbols = yield* AppConfig.symbols
    const source = Option.match(options.url, {
      onNone: () => ({ dir: options.dir }),
      onSome: (url) => ({ url, apiKey: Option.getOrUndefined(options.apiKey) })
    })
    yield* verifyBi({ source, days: options.days, symbols }).pipe(
      Effect.catchTag("BiViolation", (e) => Effect.fail(new StartupError({ message: `verify-bi: ${e.message}` }))),
      Effect.provide(NodeHttpClient.layerUndici)
    )
  })
