import * as fs from "node:fs"
import * as path from "node:path"
import { makeSimMarket, type SimSettings } from "../../src/domain/SimMarket.js"
import { parseInstantMicros, type TickerSymbol } from "../../src/domain/Ticker.js"

/** An event's identity as the platform defines it: (symbol, instant of timestamp_utc in µs). */
export const identityOf = (symbol: string, timestampUtc: string): string => `${symbol}|${parseInstantMicros(timestampUtc)}`

export interface SimDays {
  /** Day file name (`YYYY-MM-DD.jsonl`) → its lines, in generation order. */
  readonly files: ReadonlyMap<string, ReadonlyArray<string>>
  /** Identity → the exact JSONL line of that event (JSON.stringify of the contract event). */
  readonly lines: ReadonlyMap<string, string>
}

/**
 * The first `count` events of the deterministic simulated market (src/domain/SimMarket.ts) as a
 * recording: JSONL day files named by the events' UTC day, one contract event per line, exactly as the
 * consumer's raw log writes them. Returns what was written.
 */
export const writeSimDays = (
  dir: string,
  settings: Omit<SimSettings, "symbols"> & { readonly symbols: ReadonlyArray<string> },
  count: number
): SimDays => {
  const market = makeSimMarket({ ...settings, symbols: settings.symbols as ReadonlyArray<TickerSymbol> })
  const files = new Map<string, Array<string>>()
  const lines = new Map<string, string>()
  for (let i = 0; i < count; i++) {
    const { event, symbol, tsMicros } = market.next()
    const line = JSON.stringify(event)
    const day = `${new Date(Math.floor(tsMicros / 1000)).toISOString().slice(0, 10)}.jsonl`
    let dayLines = files.get(day)
    if (dayLines === undefined) files.set(day, (dayLines = []))
    dayLines.push(line)
    lines.set(`${symbol}|${tsMicros}`, line)
  }
  fs.mkdirSync(dir, { recursive: true })
  for (const [day, dayLines] of files) fs.writeFileSync(path.join(dir, day), `${dayLines.join("\n")}\n`)
  return { files, lines }
}

export interface RawLog {
  /** Every line of every `*.jsonl` file in the directory, blank lines included, with where it is. */
  readonly lines: ReadonlyArray<{ readonly file: string; readonly line: number; readonly text: string }>
}

/** Reads a raw-log directory (RAW_DIR): every line of its day files, the final newline not counted as a line. */
export const readRawLog = (dir: string): RawLog => {
  if (!fs.existsSync(dir)) return { lines: [] }
  const lines: Array<{ file: string; line: number; text: string }> = []
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".jsonl")).sort()) {
    const text = fs.readFileSync(path.join(dir, file), "utf8")
    const parts = text.split("\n")
    if (parts[parts.length - 1] === "") parts.pop()
    parts.forEach((t, i) => lines.push({ file, line: i + 1, text: t }))
  }
  return { lines }
}

/** Lines in the day files of `dir`, counted by newlines (cheap enough to poll). */
export const rawLineCount = (dir: string): number => {
  if (!fs.existsSync(dir)) return 0
  let n = 0
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".jsonl"))) {
    const bytes = fs.readFileSync(path.join(dir, file))
    for (let i = bytes.indexOf(10); i !== -1; i = bytes.indexOf(10, i + 1)) n++
  }
  return n
}
