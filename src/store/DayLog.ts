import * as NodeFs from "node:fs"
import { Error as PlatformError, FileSystem, Path } from "@effect/platform"
import { Cause, Effect } from "effect"
import { DAY_MS, utcDate } from "../domain/Time.js"
import { type Sink, SinkError } from "./TickSink.js"

/**
 * What a day log remembers of one day file: the identities of the values it holds, so that a replay
 * (a Kafka redelivery, a renewal's overlap, a repair) is not appended again.
 */
export interface DayMemory<A> {
  /** Remembers `value`'s identity; false when it was already known. */
  readonly add: (value: A) => boolean
  /** Forgets it again (its append failed). */
  readonly remove: (value: A) => void
  /** Remembers the identity on one line read back from the file; a line it cannot read is skipped. */
  readonly addLine: (line: string) => void
}

export interface DayLogOptions<A> {
  /** The sink's name (in SinkError and /health). */
  readonly name: string
  readonly dir: string
  /** The value's instant (µs since the epoch): its UTC day names the file, `dir/YYYY-MM-DD.jsonl`. */
  readonly micros: (value: A) => number
  /** The value as one line, without the newline. */
  readonly line: (value: A) => string
  /** A new, empty memory for a day file (bounded: it forgets what is least likely to come again). */
  readonly memory: () => DayMemory<A>
  /** Day files whose memories are kept; the one touched longest ago is dropped first. */
  readonly maxDays: number
  /** Read only this many bytes at the end of a day file back (undefined: all of it). */
  readonly readBackBytes?: number
  /**
   * Create `dir` at the first append rather than at start: a sub-directory (trades) of a raw
   * directory that cannot be written then shows as this sink down on /health, like the others,
   * instead of stopping the process.
   */
  readonly createDirOnWrite?: boolean
}

const DAY_US = DAY_MS * 1000
/** Read-back chunks: a whole day file is never one string (a busy trades day exceeds V8's longest). */
const READ_CHUNK = 1024 * 1024
const NEWLINE = 0x0a
/** The largest append buffer a day log keeps between batches (a batch of ~10,000 ticker lines). */
const MAX_SCRATCH = 8 * 1024 * 1024

const isNotFound = (e: PlatformError.PlatformError) => e._tag === "SystemError" && e.reason === "NotFound"

/**
 * A raw (bronze) log of day files: each value appended as one line to the file of its UTC day, values
 * already in that file recognised (from memory, and after a restart from the file read back once) and
 * not appended again.
 *
 * An append is all or nothing for readers: the file's size is noted first, and when the write fails
 * part-way (a full disk, an I/O error) the file is truncated back to it. Should that truncation fail
 * too, the size is kept and the file is cut back to it before anything else is appended to it, so a
 * retried batch never lands after a partial line. Only the values of a successful append count as
 * written, so the retry writes each of them exactly once.
 */
export const makeDayLog = <A>(options: DayLogOptions<A>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const { dir, maxDays, readBackBytes } = options
    let dirReady = false
    const ensureDir = Effect.suspend(() =>
      dirReady ? Effect.void : Effect.tap(fs.makeDirectory(dir, { recursive: true }), () => (dirReady = true))
    )
    if (options.createDirOnWrite !== true) yield* ensureDir
    /** By day, the one touched longest ago first (Map order). */
    const seen = new Map<string, DayMemory<A>>()
    /** Files whose failed append could not be undone, and the size to cut them back to (0: the file was new). */
    const unfinishedRollbacks = new Map<string, number>()
    /** One batch at a time: the size noted before an append is only right if nothing else appends meanwhile. */
    const lock = yield* Effect.makeSemaphore(1)

    /**
     * Hands each whole line of `file` (of its last `readBackBytes`, the first, cut line skipped) to
     * `onLine`, chunk by chunk. A process killed mid-write can leave a torn last line. Its batch was
     * never acknowledged (it comes again: Kafka redelivers, or it died with the in-process queue), so it
     * is cut off and every line of the file stays a whole value.
     */
    const readBack = (file: string, onLine: (line: string) => void) =>
      Effect.scoped(
        Effect.gen(function* () {
          if (!(yield* fs.exists(file))) return
          const size = Number((yield* fs.stat(file)).size)
          const start = readBackBytes === undefined ? 0 : Math.max(0, size - readBackBytes)
          const handle = yield* fs.open(file, { flag: "r" })
          if (start > 0) yield* handle.seek(start, "start")
          let skipFirst = start > 0
          let rest: Buffer = Buffer.alloc(0)
          while (true) {
            const chunk = yield* handle.readAlloc(READ_CHUNK)
            if (chunk._tag === "None") break
            const fresh = Buffer.from(chunk.value.buffer, chunk.value.byteOffset, chunk.value.byteLength)
            const bytes = rest.length === 0 ? fresh : Buffer.concat([rest, fresh])
            const end = bytes.lastIndexOf(NEWLINE)
            if (end < 0) {
              rest = bytes
              continue
            }
            rest = Buffer.from(bytes.subarray(end + 1)) // a copy: the chunk is not kept alive by it
            let text = bytes.toString("utf8", 0, end)
            if (skipFirst) {
              skipFirst = false
              text = text.slice(text.indexOf("\n") + 1 || text.length)
            }
            for (const line of text.split("\n")) if (line.length > 0) onLine(line)
          }
          if (rest.length > 0) yield* fs.truncate(file, size - rest.length)
        })
      )

    /** The memory of `day`'s file, read back from it the first time (after a restart, or once forgotten). */
    const remembered = (day: string, file: string) =>
      Effect.gen(function* () {
        const known = seen.get(day)
        if (known !== undefined) {
          seen.delete(day)
          seen.set(day, known)
          return known
        }
        const memory = options.memory()
        // Once per day file and process; the hot path never parses.
        yield* readBack(file, memory.addLine)
        seen.set(day, memory)
        for (const old of [...seen.keys()].slice(0, Math.max(0, seen.size - maxDays))) seen.delete(old)
        return memory
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
     * The bytes of an append, reused from one batch to the next: encoding into it costs a fraction of
     * `Buffer.from` (a new buffer each time, the text measured first). UTF-8 takes at most 3 bytes per
     * UTF-16 unit, so the text always fits; a batch too big to keep a buffer for gets one of its own.
     */
    let scratch = Buffer.allocUnsafe(64 * 1024)
    const encode = (text: string): readonly [Buffer, number] => {
      const worst = text.length * 3
      if (worst > MAX_SCRATCH) {
        const bytes = Buffer.from(text)
        return [bytes, bytes.length]
      }
      if (scratch.length < worst) scratch = Buffer.allocUnsafe(worst)
      return [scratch, scratch.write(text, 0, "utf8")]
    }

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
          const [bytes, length] = encode(text)
          for (let written = 0; written < length; ) written += NodeFs.writeSync(fd, bytes, written, length - written)
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

    const writeDay = (day: string, values: ReadonlyArray<A>) =>
      Effect.gen(function* () {
        const file = path.join(dir, `${day}.jsonl`)
        yield* ensureDir
        yield* finishRollback(file)
        const memory = yield* remembered(day, file)
        // Remembered as they are taken (a repeat within the batch is then a replay too), forgotten again if the append fails.
        const added: Array<A> = []
        let text = ""
        for (const value of values) {
          if (!memory.add(value)) continue
          added.push(value)
          text += `${options.line(value)}\n`
        }
        if (added.length === 0) return
        // Not interruptible: an interrupted write would leave a partial append that nobody undoes.
        yield* appendWhole(file, text).pipe(
          Effect.tapError(() =>
            Effect.sync(() => {
              for (let i = added.length - 1; i >= 0; i--) memory.remove(added[i]!)
            })
          ),
          Effect.uninterruptible
        )
      })

    /** The batch by UTC day of its values' instants, in the order the days first appear. */
    const byDay = (values: ReadonlyArray<A>) => {
      const days = new Map<number, Array<A>>()
      for (const value of values) {
        const index = Math.floor(options.micros(value) / DAY_US)
        const day = days.get(index)
        if (day === undefined) days.set(index, [value])
        else day.push(value)
      }
      return days
    }

    const writeBatch = (values: ReadonlyArray<A>) =>
      Effect.gen(function* () {
        // Best effort for files this batch does not touch; those it does are cut back in writeDay or it fails.
        for (const file of [...unfinishedRollbacks.keys()]) yield* finishRollback(file).pipe(Effect.ignore)
        for (const [index, dayValues] of byDay(values)) yield* writeDay(utcDate(index * DAY_MS), dayValues)
      }).pipe(
        Effect.mapError((cause) => new SinkError({ sink: options.name, cause })),
        lock.withPermits(1)
      )

    const sink: Sink<A> = { name: options.name, writeBatch }
    return sink
  })
