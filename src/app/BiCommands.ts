import { FileSystem, HttpClient, Path } from "@effect/platform"
import { Data, Effect } from "effect"
import type { CsvContract } from "../bi/csv.js"
import { BiReports } from "../bi/BiReports.js"
import { verifyCsv } from "../bi/verify.js"
import type { TickerSymbol } from "../domain/Ticker.js"

const perSymbol = ["daily_ohlc", "daily_volume", "daily_features"] as const

/** The files bi-build writes, and verify-bi reads: one per contract and symbol, latest prices for all. */
export const biFiles = (symbols: ReadonlyArray<TickerSymbol>) => [
  ...perSymbol.flatMap((contract) => symbols.map((symbol) => ({ contract, symbol, file: `${contract}_${symbol}.csv` }))),
  { contract: "latest_prices" as const, symbol: undefined, file: "latest_prices.csv" }
]

export class BiViolation extends Data.TaggedError("BiViolation")<{ readonly message: string }> {}

/** bi-build: the same CSVs the API serves, as static files in `dir`. */
export const buildBiFiles = (options: { readonly dir: string; readonly days: number; readonly symbols: ReadonlyArray<TickerSymbol> }) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const reports = yield* BiReports
    yield* fs.makeDirectory(options.dir, { recursive: true })
    for (const { contract, file, symbol } of biFiles(options.symbols)) {
      const csv =
        symbol === undefined
          ? yield* reports.latestPrices(options.symbols)
          : contract === "daily_ohlc"
            ? yield* reports.dailyOhlc(symbol, options.days)
            : contract === "daily_volume"
              ? yield* reports.dailyVolume(symbol, options.days)
              : yield* reports.dailyFeatures(symbol, options.days)
      yield* fs.writeFileString(path.join(options.dir, file), csv)
      yield* Effect.logInfo(`wrote ${path.join(options.dir, file)}`).pipe(
        Effect.annotateLogs({ rows: csv.split("\r\n").length - 2 })
      )
    }
  })

const urlOf = (base: string, contract: CsvContract, symbol: string | undefined, symbols: ReadonlyArray<string>, days: number) =>
  symbol === undefined
    ? `${base}/bi/${contract}.csv?symbols=${symbols.join(",")}`
    : `${base}/bi/${contract}.csv?symbol=${symbol}&days=${days}`

/**
 * verify-bi: checks the files in `dir`, or a running server's endpoints at `url`, against the
 * contracts; fails with the first violation.
 */
export const verifyBi = (options: {
  readonly source: { readonly dir: string } | { readonly url: string; readonly apiKey: string | undefined }
  readonly days: number
  readonly symbols: ReadonlyArray<TickerSymbol>
}) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const client = yield* HttpClient.HttpClient
    let checked = 0
    for (const { contract, file, symbol } of biFiles(options.symbols)) {
      const { source, text } =
        "dir" in options.source
          ? yield* Effect.gen(function* () {
              const where = path.join((options.source as { dir: string }).dir, file)
              if (!(yield* fs.exists(where))) {
                return yield* new BiViolation({ message: `${where} is missing: run bi-build first` })
              }
              return { source: where, text: yield* fs.readFileString(where) }
            })
          : yield* Effect.gen(function* () {
              const { apiKey, url } = options.source as { url: string; apiKey: string | undefined }
              const where = urlOf(url.replace(/\/+$/, ""), contract, symbol, options.symbols, options.days)
              const res = yield* client.get(where, { headers: apiKey === undefined ? {} : { "x-api-key": apiKey } }).pipe(
                Effect.mapError((e) => new BiViolation({ message: `${where}: ${e.message}` }))
              )
              const text = yield* Effect.orDie(res.text)
              if (res.status !== 200) {
                return yield* new BiViolation({ message: `${where}: HTTP ${res.status}: ${text.slice(0, 200)}` })
              }
              const type = res.headers["content-type"] ?? ""
              if (type !== "text/csv; charset=utf-8") {
                return yield* new BiViolation({ message: `${where}: content-type ${JSON.stringify(type)} is not text/csv; charset=utf-8` })
              }
              return { source: where, text }
            })
      const violation = verifyCsv(contract, text)
      if (violation !== undefined) return yield* new BiViolation({ message: `${source} ${violation}` })
      checked++
    }
    yield* Effect.logInfo(`verify-bi: ${checked} CSV document(s) match their contracts`)
    return checked
  })
