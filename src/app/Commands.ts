import { Command, Options } from "@effect/cli"
import { NodeHttpClient } from "@effect/platform-node"
import { Config, Effect, Layer, Option } from "effect"
import * as AppConfig from "../Config.js"
import { BI_MAX_DAYS, BiReports } from "../bi/BiReports.js"
import type { Interval } from "../domain/Candles.js"
import { StoreForCommands } from "../store/Store.js"
import { BACKFILL_MAX_DAYS, runBackfill } from "./Backfill.js"
import { buildBiFiles, verifyBi } from "./BiCommands.js"
import { runMigrateStore } from "./MigrateStore.js"
import { BinanceLive, StartupError } from "./Roles.js"

// The subcommands: each builds the layers it needs, does its work and returns (main.ts exits).

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
      Effect.provide(BinanceLive.pipe(Layer.provideMerge(StoreForCommands)))
    )
  })

const BiLive = BiReports.Default.pipe(
  Layer.provideMerge(StoreForCommands)
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

const MIGRATE_CHUNK_MAX = 50_000

/** `sqlite:<path>` (also `sqlite://<path>`) to the path, or undefined. */
const sqlitePath = (from: string) => {
  if (!from.startsWith("sqlite:")) return undefined
  const rest = from.slice("sqlite:".length)
  const file = rest.startsWith("//") ? rest.slice(2) : rest
  return file === "" ? undefined : file
}

/** `to` without user or password, for an error message. */
const shownUrl = (to: string) => {
  try {
    const url = new URL(to)
    return `${url.protocol}//${url.host}${url.pathname}`
  } catch {
    return "(not a URL)"
  }
}

/** The URL when it is a PostgreSQL one (Config's own check); the error never repeats a password. */
const destination = (to: string) =>
  AppConfig.postgresUrl(to) !== undefined
    ? Effect.succeed(to)
    : Effect.fail(
        new StartupError({
          message: `--to ${shownUrl(to)} is not valid: expected a PostgreSQL URL such as postgres://user:password@host:5432/crypto.`
        })
      )

/** `migrate-store`: a SQLite history copied into PostgreSQL (resumable, idempotent), then exit. */
export const runMigrateStoreCommand = (options: {
  readonly from: Option.Option<string>
  readonly to: Option.Option<string>
  readonly chunkSize: number
  readonly tty: boolean
}) =>
  Effect.gen(function* () {
    const from = Option.isSome(options.from) ? options.from.value : `sqlite:${yield* AppConfig.storagePath}`
    const file = sqlitePath(from)
    if (file === undefined) {
      return yield* new StartupError({
        message: `--from ${JSON.stringify(from)} is not valid: expected sqlite:<the platform's SQLite file>, e.g. --from sqlite:data/app.db.`
      })
    }
    const to = Option.isSome(options.to) ? Option.some(options.to.value) : yield* Config.option(AppConfig.databaseUrl)
    if (Option.isNone(to)) {
      return yield* new StartupError({
        message: "migrate-store needs a destination: --to postgres://user:password@host:5432/crypto (or DATABASE_URL)."
      })
    }
    if (!Number.isInteger(options.chunkSize) || options.chunkSize < 1 || options.chunkSize > MIGRATE_CHUNK_MAX) {
      return yield* new StartupError({ message: `--chunk-size ${options.chunkSize} is not valid: expected a whole number from 1 to ${MIGRATE_CHUNK_MAX}.` })
    }
    yield* runMigrateStore({ from: file, to: yield* destination(to.value), chunkSize: options.chunkSize, tty: options.tty })
  })

/** Declared here rather than in main.ts, which only registers it (with its logger). */
export const migrateStoreCommand = Command.make(
  "migrate-store",
  {
    from: Options.text("from").pipe(
      Options.optional,
      Options.withDescription("the SQLite history to copy, sqlite:<path> (default: sqlite:STORAGE_PATH)")
    ),
    to: Options.text("to").pipe(
      Options.optional,
      Options.withDescription("the PostgreSQL database, postgres://user:password@host:5432/db (default: DATABASE_URL)")
    ),
    chunkSize: Options.integer("chunk-size").pipe(
      Options.withDefault(5000),
      Options.withDescription(`rows per INSERT and per transaction, 1..${MIGRATE_CHUNK_MAX}`)
    )
  },
  (options) => runMigrateStoreCommand({ ...options, tty: process.stderr.isTTY === true })
).pipe(
  Command.withDescription(
    "Copy a SQLite history into PostgreSQL: idempotent, resumes where an interrupted run stopped, and reads the file without changing it"
  )
)
