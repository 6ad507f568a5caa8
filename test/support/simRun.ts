import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { mainJs, type RunningMain } from "./process.js"
import { query } from "./sqlite.js"

export interface Scratch {
  /** A fresh temporary directory (from the file's beforeAll on). */
  readonly dir: string
  /** The processes the file started: what still runs after the last test is SIGKILLed. */
  readonly running: Array<RunningMain>
}

/**
 * For a test file that runs the built `dist/main.js`: before all its tests, checks that it was built and
 * makes a temporary directory named `prefix…`; after them, SIGKILLs what is left of `running` and
 * removes the directory. Call it at the top level of the file.
 */
export const useScratch = (prefix: string): Scratch => {
  let dir: string | undefined
  const running: Array<RunningMain> = []
  beforeAll(() => {
    if (!fs.existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does it first)")
    dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  })
  afterAll(() => {
    for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL")
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true })
  })
  return {
    get dir() {
      if (dir === undefined) throw new Error("the scratch directory is made in beforeAll")
      return dir
    },
    running
  }
}

/** The JSON log lines a process printed (LOG_FORMAT=json); any other line is passed over. */
export const logMessages = (p: RunningMain) =>
  p
    .output()
    .split("\n")
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as { message: string; logLevel: string }]
      } catch {
        return []
      }
    })

/** The rows of the trades table of `db`; 0 while there is no such database or table yet. */
export const tradeCount = (db: string): number => {
  try {
    return Number(query(db, "SELECT COUNT(*) AS n FROM trades")[0]!.n)
  } catch {
    return 0
  }
}

/** Every line of the trades raw log (`RAW_DIR/trades/*.jsonl`), day files in name order. */
export const rawTradeLines = (rawDir: string): Array<string> => {
  const tradesDir = path.join(rawDir, "trades")
  if (!fs.existsSync(tradesDir)) return []
  return fs
    .readdirSync(tradesDir)
    .filter((f) => f.endsWith(".jsonl"))
    .sort()
    .flatMap((f) => fs.readFileSync(path.join(tradesDir, f), "utf8").split("\n").filter((l) => l !== ""))
}

/** The last lines (DEBUG left out) of each consumer run, for a failure's message. */
export const consumerLogs = (consumers: ReadonlyArray<RunningMain>, lines = 15) =>
  consumers
    .map((c, i) => `--- consumer run ${i + 1} ---\n${c.output().split("\n").filter((l) => !l.includes('"DEBUG"')).slice(-lines).join("\n")}`)
    .join("\n")
