import { compareDecimal, isDecimal, maxDecimal, minDecimal } from "../domain/Decimal.js"
import { parseInstantMicros, symbolPattern } from "../domain/Ticker.js"
import { type CsvContract, csvContracts, parseCsv } from "./csv.js"

type Check = (value: string) => string | undefined

const date: Check = (v) =>
  /^\d{4}-\d{2}-\d{2}$/.test(v) && new Date(`${v}T00:00:00Z`).toISOString().startsWith(v)
    ? undefined
    : "expected an ISO date YYYY-MM-DD"
const symbol: Check = (v) => (symbolPattern.test(v) ? undefined : "expected a Binance symbol such as BTCUSDT")
const unsigned: Check = (v) => (isDecimal(v) && !v.startsWith("-") ? undefined : "expected a non-negative decimal")
const signed: Check = (v) => (isDecimal(v) ? undefined : "expected a decimal")
const feature: Check = (v) => (v === "" || isDecimal(v) ? undefined : "expected a plain number or an empty field")
const instant: Check = (v) =>
  parseInstantMicros(v) === undefined ? "expected an ISO-8601 instant such as 2026-01-15T14:03:22.913852+00:00" : undefined

const columnChecks: Record<CsvContract, ReadonlyArray<Check>> = {
  daily_ohlc: [date, symbol, unsigned, unsigned, unsigned, unsigned, unsigned],
  daily_volume: [date, symbol, unsigned, unsigned],
  latest_prices: [symbol, unsigned, signed, unsigned, instant],
  daily_features: [date, symbol, unsigned, feature, feature, feature]
}

/**
 * Checks one CSV document against its contract: the exact header, each field's type, dates
 * ascending and unique per symbol, and for OHLC high >= max(open, close) and low <= min(open, close).
 * Returns the first violation as a sentence (with its line number), or undefined when it holds.
 */
export const verifyCsv = (contract: CsvContract, text: string): string | undefined => {
  let records: Array<Array<string>>
  try {
    records = parseCsv(text)
  } catch (e) {
    return `not valid CSV: ${(e as Error).message}`
  }
  const header = csvContracts[contract]
  if (records.length === 0 || records[0]!.join(",") !== header.join(",")) {
    return `line 1: expected the header ${header.join(",")}, got ${records[0]?.join(",") ?? "nothing"}`
  }
  const lastDate = new Map<string, string>()
  for (let i = 1; i < records.length; i++) {
    const line = i + 1
    const row = records[i]!
    if (row.length !== header.length) return `line ${line}: expected ${header.length} fields, got ${row.length}`
    for (let c = 0; c < header.length; c++) {
      const problem = columnChecks[contract][c]!(row[c]!)
      if (problem !== undefined) return `line ${line}, column ${header[c]}: ${problem}, got ${JSON.stringify(row[c])}`
    }
    if (header[0] === "date") {
      const [day, sym] = row as [string, string]
      const previous = lastDate.get(sym)
      if (previous !== undefined && day <= previous) {
        return `line ${line}: dates must ascend without repeats, but ${day} follows ${previous} for ${sym}`
      }
      lastDate.set(sym, day)
    }
    if (contract === "daily_ohlc") {
      const [, , open, high, low, close] = row as [string, string, string, string, string, string]
      if (compareDecimal(high, maxDecimal(open, close)) < 0) {
        return `line ${line}: high ${high} is below max(open, close) ${maxDecimal(open, close)}`
      }
      if (compareDecimal(low, minDecimal(open, close)) > 0) {
        return `line ${line}: low ${low} is above min(open, close) ${minDecimal(open, close)}`
      }
    }
  }
  return undefined
}
