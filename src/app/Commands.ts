import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer, Option } from "effect"
import * as AppConfig from "../Config.js"
import { BI_MAX_DAYS, BiReports } from "../bi/BiReports.js"
import type { Interval } from "../domain/Candles.js"
import { CandleRepo } from "../store/CandleRepo.js"
import { SqlForCommands } from "../store/Sql.js"
import { TickRepo } from "../store/TickRepo.js"
import { BACKFILL_MAX_DAYS, runBackfill } from "./Backfill.js"
import { buildBiFiles, verifyBi } from "./BiCommands.js"
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
