import * as NodeFs from "node:fs"
import { Error as PlatformError, FileSystem, Path } from "@effect/platform"
import { Cause, Effect } from "effect"
import { eventJson } from "../domain/EventJson.js"
import { parseInstantMicros, type Tick, type TickerEvent } from "../domain/Ticker.js"
import { DAY_MS, utcDate } from "../domain/Time.js"
import { Identities } from "./Identities.js"
import { SinkError, TickSink } from "./TickSink.js"

/** How much of an existing day file is read back to recognise replays after a restart (~45,000 lines). */
const TAIL_BYTES = 8 * 1024 * 1024
/**
 * Identities remembered per day file; the oldest fall out first. Replays come from Kafka redelivery
 * (the batches in flight around a crash or a rebalance), so recent identities are what matter; this is
 * about twice what the tail read recognises after a restart.
 */
const MAX_REMEMBERED = 100_000
/** Day files whose identities are kept in memory (today, yesterday and a late straggler). */
const MAX_DAYS = 3
// The sink's memory is therefore bounded however long it runs: at most MAX_DAYS × MAX_REMEMBERED =
// 300,000 identities (8 bytes each, at most twice that allocated, plus each symbol's name once),
// plus one number per day file whose failed append could not be undone yet (cut back before that
// file's next append, so in practice only the days of the one batch being retried).

const DAY_US = DAY_MS * 1000
const dayName = (dayIndex: number) => utcDate(dayIndex * DAY_MS)

const isNotFound = (e: PlatformError.PlatformError) => e._tag === "SystemError" && e.reason === "NotFound"

/**
 * The raw (bronze) log: `RAW_DIR/YYYY-MM-DD.jsonl` by the event's UTC day, one contract event per
 * line, appended. Replays of recently written events (Kafka redelivery after a crash) are recognised
 * and not appended again; SQLite remains the exact, queryable store.
 *
 * An append is all or nothing for readers: the file's size is noted first, and when the write fails
 * part-way (a full disk, an I/O error) the file is truncated back to it. Should that truncation fail
 * too, the size is kept and the file is cut back to it before anything else is appended to it, so a
 * retried batch never lands after a partial line. Only the events of a successful append count as
 * written, so the retry writes each of them exactly once.
 */
export const makeJsonlSink = (rawDir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    yield* fs.makeDirectory(rawDir, { recursive: true })
    const seen = new Map<string, Identities>()
    /** Files whose failed append could not be undone, and the size to cut them back to (0: the file was new). */
    const unfinishedRollbacks = new Map<string, number>()
    /** One batch at a time: the size noted before an append is only right if nothing else appends meanwhile. */
    const lock = yield* Effect.makeSemaphore(1)

    const readTail = (file: string) =>
      Effect.gen(function* () {
        if (!(yield* fs.exists(file))) return ""
        const size = Number((yield* fs.stat(file)).size)
        if (size <= TAIL_BYTES) return yield* fs.readFileString(file)
        return yield* Effect.scoped(
          Effect.gen(function* () {
            const handle = yield* fs.open(file, { flag: "r" })
            yield* handle.seek(size - TAIL_BYTES, "start")
            const bytes = yield* handle.readAlloc(TAIL_BYTES)
            const text = new TextDecoder().decode(bytes._tag === "Some" ? bytes.value : new Uint8Array())
            return text.slice(text.indexOf("\n") + 1) // the first line may be cut
          })
        )
      })

    const remembered = (day: string, file: string) =>
      Effect.gen(function* () {
        const known = seen.get(day)
        if (known !== undefined) return known
        const ids = new Identities(MAX_REMEMBERED)
        const tail = yield* readTail(file)
        // A process killed mid-write can leave a torn last line. Its batch was never acknowledged (it
        // comes again: Kafka redelivers, or it died with the in-process queue), so cut it off and
        // every line of the file stays a whole event.
        if (tail.length > 0 && !tail.endsWith("\n")) {
          const fragment = tail.slice(tail.lastIndexOf("\n") + 1)
          const size = Number((yield* fs.stat(file)).size)
          yield* fs.truncate(file, size - Buffer.byteLength(fragment))
        }
        // Read back once per day file and process (after a restart); the hot path never parses.
        for (const line of tail.split("\n")) {
          if (line.length === 0) continue
          try {
            const parsed = JSON.parse(line) as TickerEvent
            const micros = parseInstantMicros(parsed.timestamp_utc)
            if (micros !== undefined) ids.add(parsed.symbol, micros)
          } catch {
            // a line damaged otherwise (not by a torn write): not an identity we can match
          }
        }
        seen.set(day, ids)
        for (const old of [...seen.keys()].sort().slice(0, Math.max(0, seen.size - MAX_DAYS))) seen.delete(old)
        return ids
      })

    /** Cuts `file` back to where it was before an append whose rollback failed; nothing to do otherwise. */
    const finishRollback = (file: string) => {
      const size = unfinishedRollbacks.get(file)
      if (size === undefined) return Effect.void
      return fs.truncate(file, size).pipe(
        Effect.catchIf(isNotFound, () => Effect.void),
        Effect.tap(() => Effect.sync(() => unfinishedRollbacks.delete(file)))
      )
    }

    /** Undoes a failed append: back to `size` bytes, or no file when there was none. Never fails. */
    const rollback = (file: string, size: number | undefined) =>
      (size === undefined ? fs.remove(file) : fs.truncate(file, size)).pipe(
        Effect.catchIf(isNotFound, () => Effect.void),
        Effect.catchAll((error) =>
          Effect.sync(() => unfinishedRollbacks.set(file, size ?? 0)).pipe(
            Effect.zipRight(
              Effect.logWarning("could not undo a failed append; it is undone before the next one", Cause.fail(error))
            ),
            Effect.annotateLogs({ file })
          )
        )
      )

    /**
     * Appends `text` to `file` whole, or leaves the file as it was (see `rollback`). The append itself
     * is synchronous (open, fstat, write, close): a few system calls into the page cache, where the
     * asynchronous API pays a thread-pool round trip for each; the SQLite write beside it is
     * synchronous too. The file is opened anew each time, so a day file moved away meanwhile is
     * created again rather than written after its end.
     */
    const appendWhole = (file: string, text: string) =>
      Effect.suspend(() => {
        const existed = NodeFs.existsSync(file)
        let fd: number | undefined
        /** The size to go back to once the write has begun (undefined: remove the file); null before. */
        let before: number | undefined | null = null
        try {
          fd = NodeFs.openSync(file, "a")
          before = existed ? NodeFs.fstatSync(fd).size : undefined
          const bytes = Buffer.from(text)
          for (let written = 0; written < bytes.length; ) written += NodeFs.writeSync(fd, bytes, written)
          NodeFs.closeSync(fd)
          return Effect.void
        } catch (error) {
          if (fd !== undefined) {
            try {
              NodeFs.closeSync(fd)
            } catch {
              // the write's error is the one to report
            }
          }
          return before === null ? Effect.fail(error) : rollback(file, before).pipe(Effect.zipRight(Effect.fail(error)))
        }
      })

    const writeDay = (day: string, dayTicks: ReadonlyArray<Tick>) =>
      Effect.gen(function* () {
        const file = path.join(rawDir, `${day}.jsonl`)
        yield* finishRollback(file)
        const ids = yield* remembered(day, file)
        // Remembered as they are taken (a repeat within the batch is then a replay too), forgotten again if the append fails.
        const added: Array<Tick> = []
        let text = ""
        for (const tick of dayTicks) {
          if (!ids.add(tick.symbol, tick.tsMicros)) continue
          added.push(tick)
          text += `${eventJson(tick.event)}\n`
        }
        if (added.length === 0) return
        // Not interruptible: an interrupted write would leave a partial append that nobody undoes.
        yield* appendWhole(file, text).pipe(
          Effect.tapError(() => Effect.sync(() => added.forEach((t) => ids.remove(t.symbol, t.tsMicros)))),
          Effect.uninterruptible
        )
      })

    /** The batch by UTC day of its ticks' instants, in the order the days first appear. */
    const byDay = (ticks: ReadonlyArray<Tick>) => {
      const days = new Map<number, Array<Tick>>()
      for (const tick of ticks) {
        const index = Math.floor(tick.tsMicros / DAY_US)
        const day = days.get(index)
        if (day === undefined) days.set(index, [tick])
        else day.push(tick)
      }
      return days
    }

    const writeBatch = (ticks: ReadonlyArray<Tick>) =>
      Effect.gen(function* () {
        // Best effort for files this batch does not touch; those it does are cut back in writeDay or it fails.
        for (const file of [...unfinishedRollbacks.keys()]) yield* finishRollback(file).pipe(Effect.ignore)
        for (const [index, dayTicks] of byDay(ticks)) yield* writeDay(dayName(index), dayTicks)
      }).pipe(
        Effect.mapError((cause) => new SinkError({ sink: "jsonl", cause })),
        lock.withPermits(1)
      )

    return TickSink.of({ name: "jsonl", writeBatch })
  })
