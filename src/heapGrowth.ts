import { constants, type PerformanceEntry, PerformanceObserver } from "node:perf_hooks"
import * as v8 from "node:v8"

const FLAG = "--heap-growing-percent"
/** Full collections run with the fixed factor before V8's own heuristic takes over again. */
const FIXED_FOR_FULL_COLLECTIONS = 5

/**
 * How far V8 lets the old generation grow past what was live at the last full collection: 1.5× for
 * the first few full collections after start, then V8's own choice.
 *
 * V8 picks that factor from how fast its collections and the program run. Right after start-up it
 * has no measure of either and takes its largest, 4×: this process's live heap is ~35 MB, and its
 * short-lived per-event objects, partly promoted, then filled ~130 MB of heap with garbage before the
 * next full collection (RSS ~250 MB at 1,000 events/s, bench/memory.ts). Once it has measured a few
 * collections its own factor is sound: about 1.5× at that rate, and larger at 50,000 events/s, where a
 * fixed 1.5× would collect so often that it cost the Kafka roles 13 % of their throughput
 * (bench/e2e-kafka.ts). There is no cap (--max-old-space-size): a cap must guess the live set at the
 * highest rate and, set too low, stalls the process in garbage collection.
 *
 * Set at run time, before anything else is loaded, so that it holds however the process is started
 * (`npm start`, `node dist/main.js`, the Docker image); V8 reads the flag at each full collection. A
 * factor given on node's command line wins and stays.
 */
if (!process.execArgv.some((arg) => arg.startsWith(FLAG))) {
  v8.setFlagsFromString(`${FLAG}=50`)
  let full = 0
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const { detail } = entry as PerformanceEntry & { readonly detail?: { readonly kind?: number } }
      if (detail?.kind !== constants.NODE_PERFORMANCE_GC_MAJOR) continue
      if (++full < FIXED_FOR_FULL_COLLECTIONS) continue
      v8.setFlagsFromString(`${FLAG}=0`)
      observer.disconnect()
      return
    }
  })
  observer.observe({ entryTypes: ["gc"] })
}
