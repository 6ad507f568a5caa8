// First: V8's heap sizing, before the rest of the program allocates anything.
import "./heapGrowth.js"
import { Command, Options } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, ConfigError, Effect, Layer, Logger, Option } from "effect"
import * as AppConfig from "./Config.js"
import { BACKFILL_MAX_DAYS } from "./app/Backfill.js"
import { migrateStoreCommand, runBackfillCommand, runBiBuildCommand, runVerifyBiCommand } from "./app/Commands.js"
import { type Role, roles, runRole } from "./app/Roles.js"
import { Intervals } from "./domain/Candles.js"

const LoggerLive = Layer.unwrapEffect(
  Effect.gen(function* () {
    const format = yield* AppConfig.logFormat
    const level = yield* AppConfig.logLevel
    return Layer.merge(format === "json" ? Logger.json : Logger.pretty, Logger.minimumLogLevel(level))
  })
)

const role = Options.choice("role", roles).pipe(
  Options.withDefault("all" as Role),
  Options.withDescription(
    "all: producer, consumer and API in one process; producer, consumer, api: one role each (needs BROKER_MODE=kafka for producer and consumer)"
  )
)

const root = Command.make("crypto-stream", { role }, ({ role }) => runRole(role).pipe(Effect.provide(LoggerLive)))

const backfill = Command.make(
  "backfill",
  {
    symbols: Options.text("symbols").pipe(
      Options.optional,
      Options.withDescription("comma-separated symbols (default: SYMBOLS)")
    ),
    days: Options.integer("days").pipe(
      Options.withDefault(90),
      Options.withDescription(`days of history to fetch, 1..${BACKFILL_MAX_DAYS}`)
    ),
    interval: Options.choice("interval", ["1d", "1h", "1m"] satisfies ReadonlyArray<(typeof Intervals)[number]>).pipe(
      Options.withDefault("1d" as const),
      Options.withDescription("kline interval")
    )
  },
  (options) => runBackfillCommand({ ...options, tty: process.stderr.isTTY === true }).pipe(Effect.provide(LoggerLive))
).pipe(Command.withDescription("Fetch Binance klines into the history (idempotent, resumes where the store has data)"))

const biDays = Options.integer("days").pipe(Options.withDefault(90), Options.withDescription("UTC days back from today, today included"))

const biBuild = Command.make(
  "bi-build",
  { dir: Options.directory("dir").pipe(Options.withDefault("bi"), Options.withDescription("where to write the CSV files")), days: biDays },
  (options) => runBiBuildCommand(options).pipe(Effect.provide(LoggerLive))
).pipe(Command.withDescription("Write the BI CSV contracts of every configured symbol as static files"))

const verifyBiCommand = Command.make(
  "verify-bi",
  {
    dir: Options.directory("dir").pipe(Options.withDefault("bi"), Options.withDescription("the files bi-build wrote")),
    url: Options.text("url").pipe(Options.optional, Options.withDescription("check a running server instead, e.g. http://localhost:8000")),
    apiKey: Options.text("api-key").pipe(Options.optional, Options.withDescription("x-api-key to send with --url")),
    days: biDays
  },
  (options) => runVerifyBiCommand(options).pipe(Effect.provide(LoggerLive))
).pipe(Command.withDescription("Check BI CSV files or endpoints against the contracts; exits 1 with the first violation"))

const cli = Command.run(root.pipe(Command.withSubcommands([backfill, biBuild, verifyBiCommand, migrateStoreCommand.pipe(Command.provide(LoggerLive))])), {
  name: "crypto-streaming-platform",
  version: "0.1.0"
})

const cliErrors = new Set([
  "MissingValue",
  "InvalidValue",
  "InvalidArgument",
  "CommandMismatch",
  "UnclusteredFlag",
  "MultipleValuesDetected",
  "MissingFlag",
  "MissingSubcommand",
  "CorrectedFlag",
  "NoBuiltInMatch",
  "HelpRequested"
])

/** Failures whose message is already the one line a user needs: printed alone, without a stack. */
const oneLineErrors = new Set(["StartupError", "StorageUnavailable", "PostgresRefused", "ReplayUnavailable"])

/** One clear sentence for the failures a user can fix; the full cause for anything else. */
const report = (cause: Cause.Cause<unknown>) =>
  Effect.sync(() => {
    if (Cause.isInterruptedOnly(cause)) return
    const failure = Cause.failureOption(cause)
    if (Option.isSome(failure)) {
      const e = failure.value
      if (ConfigError.isConfigError(e)) {
        console.error(`Configuration error: ${AppConfig.describeConfigError(e)}`)
        return
      }
      if (typeof e === "object" && e !== null && "_tag" in e) {
        if (oneLineErrors.has(String(e._tag)) && "message" in e) {
          console.error(String(e.message))
          return
        }
        // @effect/cli has already printed its own usage error.
        if (cliErrors.has(String(e._tag))) return
      }
    }
    console.error(Cause.pretty(cause))
  })

/**
 * The last resort behind the ordered shutdown (app/Roles.ts): whatever still runs this long after
 * SIGTERM or SIGINT (a write hung in the kernel, a Kafka client that will not close) does not keep
 * the process alive. An orchestrator would SIGKILL it at 5 s without a word; this says what happened.
 */
const EXIT_DEADLINE_MS = 4500
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    setTimeout(() => {
      console.error(
        `shutdown did not finish within ${EXIT_DEADLINE_MS / 1000} s of ${signal}; exiting now (what was not stored is logged above, and in Kafka mode stays uncommitted)`
      )
      process.exit(1)
    }, EXIT_DEADLINE_MS).unref()
  })
}

cli(process.argv).pipe(
  Effect.tapErrorCause(report),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
