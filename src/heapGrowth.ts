import * as v8 from "node:v8"

/**
 * How far V8 lets the old generation grow past what was live at the last full collection: 1.5×.
 *
 * V8 picks that factor itself from how fast its collections run, up to 4× in a process that has
 * just started. This process's live heap is ~35 MB, but its short-lived per-event objects are partly
 * promoted (they outlive two scavenges, or dead old objects still point at them), so the heap grew
 * to ~130 MB of mostly garbage before the first full collection after start-up: RSS 247 MB at
 * 1,000 events/s against 171 MB once V8 had sized the heap from what was live (bench/memory.ts). A
 * fixed factor keeps the heap within 1.5× of the live set at any rate, with no cap: a cap
 * (--max-old-space-size) must guess the live set at the highest rate and, set too low, stalls the
 * process in garbage collection.
 *
 * Set at run time, before anything else is loaded, so that it holds however the process is started
 * (`npm start`, `node dist/main.js`, the Docker image); V8 reads it at each full collection. The
 * flag given on node's command line wins.
 */
const FLAG = "--heap-growing-percent"
if (!process.execArgv.some((arg) => arg.startsWith(FLAG))) v8.setFlagsFromString(`${FLAG}=50`)
