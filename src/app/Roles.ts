import { NodeHttpClient, NodeHttpServer } from "@effect/platform-node"
import { Data, Duration, Effect, Fiber, Layer, Option } from "effect"
import type { Interval } from "../domain/Candles.js"
import { createServer } from "node:http"
import * as AppConfig from "../Config.js"
import { healthServer } from "../api/HealthHttp.js"
import { listeningServer } from "../api/NodeServer.js"
import { SecurityConfig } from "../api/Security.js"
import { BI_MAX_DAYS, BiReports } from "../bi/BiReports.js"
import { BinanceClient } from "../binance/BinanceClient.js"
import { Broker } from "../broker/Broker.js"
import { DirectBrokerLive } from "../broker/DirectBroker.js"
import { KafkaBrokerLive } from "../broker/KafkaBroker.js"
import { Health } from "../status/Health.js"
import { makeJsonlSink } from "../store/JsonlSink.js"
import { SqlLive } from "../store/Sql.js"
import { makeSqliteSink } from "../store/SqliteSink.js"
import { fanOut, TickSink } from "../store/TickSink.js"
import { TickRepo } from "../store/TickRepo.js"
import { CandleRepo } from "../store/CandleRepo.js"
import { BACKFILL_MAX_DAYS, runBackfill } from "./Backfill.js"
import { buildBiFiles, verifyBi } from "./BiCommands.js"
import { runConsumer } from "./Consumer.js"
import { runProducer } from "./Producer.js"

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

/** How long a stopping consumer may take to store and acknowledge what it already has. */
const DRAIN_TIMEOUT = Duration.millis(2500)

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
    const sinks = (yield* AppConfig.enableDbSink) ? [yield* makeSqliteSink] : []
    sinks.push(yield* makeJsonlSink(yield* AppConfig.rawDir))
    return fanOut(sinks)
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
  return yield* Layer.launch(healthServer(NodeHttpServer.layer(createServer, { port: port.value, host }))).pipe(
    Effect.catchTag("ServeError", (e) => Effect.fail(cannotListen(e, "HEALTH_PORT", port.value, host)))
  )
})

const StoreLive = Layer.merge(TickRepo.Default, CandleRepo.Default).pipe(Layer.provideMerge(SqlLive))

type Loop = Effect.Effect<unknown, unknown, unknown>

/**
 * Runs the role's loops until one fails or the process is told to stop. Stopping is ordered: the
 * producer stops first, the broker is closed so the consumer drains and acknowledges what it has, and
 * only then are the API and anything left interrupted.
 */
const runLoops = <P extends Loop = never, C extends Loop = never, A extends Loop = never>(loops: {
  readonly producer?: P
  readonly consumer?: C
  readonly api?: A
}): Effect.Effect<void, Effect.Effect.Error<P | C | A>, Effect.Effect.Context<P | C | A>> =>
  Effect.scoped(
    Effect.gen(function* () {
      const broker = yield* Effect.serviceOption(Broker)
      const consumer = loops.consumer && (yield* Effect.forkScoped(loops.consumer))
      const producer = loops.producer && (yield* Effect.forkScoped(loops.producer))
      const api = loops.api && (yield* Effect.forkScoped(loops.api))
      yield* Effect.addFinalizer(() =>
        Effect.gen(function* () {
          if (producer) yield* Fiber.interrupt(producer)
          if (Option.isSome(broker)) yield* broker.value.close
          if (consumer) {
            const drained = yield* Fiber.await(consumer).pipe(Effect.timeout(DRAIN_TIMEOUT), Effect.option)
            if (Option.isNone(drained)) yield* Effect.logWarning("consumer did not drain in time; stopping it")
          }
          yield* Effect.logInfo("stopped")
        })
      )
      const fibers = [consumer, producer, api].filter((f) => f !== undefined)
      yield* Effect.all(fibers.map(Fiber.join), { concurrency: "unbounded", discard: true })
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
    yield* Effect.logInfo(`starting role ${role} with BROKER_MODE=${mode}`)
    const api = Layer.launch(ServerLive).pipe(
      Effect.catchTag("ServeError", (e) =>
        Effect.flatMap(Effect.all([AppConfig.port, AppConfig.host]), ([port, host]) =>
          Effect.fail(cannotListen(e, "PORT", port, host))
        )
      )
    )
    switch (role) {
      case "all":
        return yield* runLoops({ producer: runProducer, consumer: runConsumer, api }).pipe(
          Effect.provide(
            Layer.mergeAll(BinanceClient.Default, SinkLive, BrokerLive).pipe(
              Layer.provideMerge(StoreLive),
              Layer.provideMerge(Health.Default)
            )
          )
        )
      case "producer":
        return yield* runLoops({ producer: runProducer, api: healthLoop }).pipe(
          Effect.provide(
            Layer.mergeAll(BinanceClient.Default, BrokerLive).pipe(Layer.provideMerge(Health.Default))
          )
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
      Effect.provide(Layer.merge(BinanceClient.Default, CandleRepo.Default).pipe(Layer.provideMerge(SqlLive)))
    )
  })

const BiLive = BiReports.Default.pipe(Layer.provideMerge(Layer.merge(TickRepo.Default, CandleRepo.Default)), Layer.provideMerge(SqlLive))

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
