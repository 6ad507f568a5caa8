import { createRequire } from "node:module"
import { Worker } from "node:worker_threads"
import { Duration, Effect, Runtime } from "effect"

/**
 * WAL checkpoints off the event loop. In WAL mode SQLite copies the log back into the database file
 * (a checkpoint, with an fsync) inside the COMMIT that takes the log past `wal_autocheckpoint` pages:
 * on the one JavaScript thread that is a quarter or more of a write's time (bench store-path). Here a
 * worker thread with a connection of its own runs a PASSIVE checkpoint every CHECKPOINT_EVERY: it
 * never blocks a writer or a reader, so the writers' commits find the log already copied. Between
 * batches the whole log is copied and the next write starts it over; under writes without a pause the
 * writers' own autocheckpoint (WAL_AUTOCHECKPOINT_PAGES) is the backstop that bounds the log, and
 * then has only the frames since the worker's last pass to copy. If the worker cannot run, that
 * backstop is SQLite's usual behaviour: nothing is lost, writes only pay for their checkpoints again.
 */

/**
 * wal_autocheckpoint of every connection that writes (the store's own, TickWriter, TradeWriter):
 * the log size, in pages, at which a writer's COMMIT checkpoints by itself. SQLite's default (1000)
 * would run the backstop four times as often; 4000 pages (16 MB of 4 KB pages) still bounds the log.
 */
export const WAL_AUTOCHECKPOINT_PAGES = 4000

/**
 * A pass copies each page changed since the last one once, however often it changed: 50 ms was as
 * fast as 10 ms in the store-path bench, with a fifth of the passes (and their fsyncs).
 */
const CHECKPOINT_EVERY = Duration.millis(50)
const STOP_WAIT = Duration.seconds(2)

// The worker is plain CommonJS evaluated from this string: no second bundle entry, and it loads the
// same better-sqlite3 the process does (its path comes in workerData). It reports each distinct
// failure once and keeps trying, a second apart.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads")
const stop = new Int32Array(workerData.stop)
const open = () => {
  try {
    const db = new (require(workerData.driver))(workerData.filename, { fileMustExist: true })
    db.pragma("busy_timeout = 0")
    db.pragma("synchronous = NORMAL")
    return db
  } catch (e) {
    parentPort.postMessage({ fatal: String((e && e.message) || e) })
  }
}
const db = open()
let said = ""
while (db !== undefined && Atomics.load(stop, 0) === 0) {
  let pause = workerData.everyMs
  try {
    db.pragma("wal_checkpoint(PASSIVE)")
    said = ""
  } catch (e) {
    const message = String((e && e.message) || e)
    if (message !== said) parentPort.postMessage({ failed: message })
    said = message
    pause = 1000
  }
  Atomics.wait(stop, 0, 0, pause)
}
if (db !== undefined) db.close()
`

const driverPath = () => createRequire(import.meta.url).resolve("better-sqlite3")

/**
 * Runs the checkpoint worker on the SQLite file `filename` (an existing WAL database) for the life of
 * the scope. Starting it never fails: a worker that cannot start or open the file says so in the log.
 */
export const checkpointer = (filename: string) =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const log = (effect: Effect.Effect<void>) => Runtime.runFork(runtime)(effect.pipe(Effect.annotateLogs({ service: "checkpointer" })))
    const fallback = "WAL checkpoints run in the writers' commits again"
    const stop = new SharedArrayBuffer(4)
    const worker = yield* Effect.try(() => {
      const w = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { filename, driver: driverPath(), stop, everyMs: Duration.toMillis(CHECKPOINT_EVERY) }
      })
      // Never the reason the process stays up; the scope's release waits for it.
      w.unref()
      return w
    }).pipe(
      Effect.tapError((e) => Effect.logWarning(`the checkpoint worker did not start (${String(e.error)}); ${fallback}`)),
      Effect.option
    )
    if (worker._tag === "None") return
    const w = worker.value
    let stopping = false
    let said = false
    const say = (message: string) => {
      said = true
      log(Effect.logWarning(message))
    }
    const exited = new Promise<number>((resolve) => w.once("exit", resolve))
    w.on("message", (m: { readonly fatal?: string; readonly failed?: string }) => {
      if (m.fatal !== undefined) say(`the checkpoint worker could not open ${filename} (${m.fatal}); ${fallback}`)
      else if (m.failed !== undefined) log(Effect.logWarning(`a WAL checkpoint failed (${m.failed}); trying again every second`))
    })
    w.on("error", (e) => say(`the checkpoint worker stopped (${e.message}); ${fallback}`))
    void exited.then((code) => {
      if (!stopping && !said) say(`the checkpoint worker exited (code ${code}); ${fallback}`)
    })
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => {
        stopping = true
        const flag = new Int32Array(stop)
        Atomics.store(flag, 0, 1)
        Atomics.notify(flag, 0)
        return exited.then(() => undefined)
      }).pipe(
        Effect.timeout(STOP_WAIT),
        Effect.catchAll(() => Effect.promise(() => w.terminate()).pipe(Effect.asVoid))
      )
    )
  })
