/**
 * `npm run bench`: the issue-8 benches, the trades bench of issue 10, the SSE bench of issue 11 and the cold start, one after
 * another (never two at once, so none disturbs another), each in its own process with its default
 * options, each writing its own section of bench/RESULTS.md. A bench that fails does not stop the others. At the end: one line per
 * bench with its verdict and how long it took.
 *
 * Order: store-path (~0.5 min), e2e-direct (~6 min), e2e-kafka (~14 min, starts and stops its own Kafka),
 * memory (~13 min: 10 min + a 3 min experiment), trades-direct (~2 min), sse-clients (~5 min),
 * cold-start (~1 min). About 38 minutes in all.
 * The benches that need the 690 MB seeded database (seed, bi-latency, latest-throughput) are not
 * part of it: run them with their own scripts.
 *
 *   node dist/bench/bench/run-all.js [--only store-path,memory,sse-clients,…]
 *
 * Exit code 0 when every bench passed, 1 when one missed a goal (exit 1) and none failed as a bench,
 * 2 when one failed as a bench (any other exit).
 */
import { spawn } from "node:child_process"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { compiledBenchDir, formatDuration, log, machineLine } from "./lib.js"

const BENCHES = ["store-path", "e2e-direct", "e2e-kafka", "memory", "trades-direct", "sse-clients", "cold-start"] as const

const { values: args } = parseArgs({ options: { only: { type: "string", default: "" } } })
const only = args.only === "" ? [...BENCHES] : args.only.split(",").map((s) => s.trim())
for (const name of only) if (!(BENCHES as ReadonlyArray<string>).includes(name)) throw new Error(`--only: unknown bench ${name}; known: ${BENCHES.join(", ")}`)

const run = (name: string) =>
  new Promise<{ code: number | null; ms: number }>((resolve) => {
    const started = Date.now()
    const child = spawn(process.execPath, [path.join(compiledBenchDir, `${name}.js`)], { stdio: "inherit" })
    const forward = (signal: NodeJS.Signals) => () => child.kill(signal)
    const onInt = forward("SIGINT")
    const onTerm = forward("SIGTERM")
    process.once("SIGINT", onInt)
    process.once("SIGTERM", onTerm)
    child.on("exit", (code) => {
      process.off("SIGINT", onInt)
      process.off("SIGTERM", onTerm)
      resolve({ code, ms: Date.now() - started })
    })
  })

const main = async () => {
  log(`bench: all (${only.join(", ")}), one after another`)
  log(machineLine())
  const results: Array<{ name: string; code: number | null; ms: number }> = []
  for (const name of only) {
    log(`\n======== ${name} ========`)
    results.push({ name, ...(await run(name)) })
  }
  log("\n======== summary ========")
  for (const r of results) {
    const verdict = r.code === 0 ? "PASS" : r.code === 1 ? "FAIL (a goal missed; see its section of bench/RESULTS.md)" : `ERROR (exit ${r.code})`
    log(`${r.name.padEnd(12)} ${verdict}, ${formatDuration(r.ms)}`)
  }
  log(machineLine())
  process.exit(results.some((r) => r.code !== 0 && r.code !== 1) ? 2 : results.some((r) => r.code !== 0) ? 1 : 0)
}

void main()
