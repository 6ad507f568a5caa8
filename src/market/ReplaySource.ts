import { type Error as PlatformError, FileSystem, Path } from "@effect/platform"
import { Clock, Data, Duration, Effect, Either, Layer, Option, ParseResult, Schema, Stream } from "effect"
import * as AppConfig from "../Config.js"
import { type Tick, TickerEventJson, toTick } from "../domain/Ticker.js"
import { Health } from "../status/Health.js"
import { MarketSource, type Publish, stopSignal, watchedPublish } from "./MarketSource.js"

/** The most events one publish carries. */
export const REPLAY_BATCH = 500
/** A failed publish is retried with the same events after this pause. */
const RETRY_AFTER_MS = 1_000
/** A single wait longer than this (a gap in the recording) is announced in the log. */
const LONG_WAIT_MS = 60_000

/** `SOURCE=replay` cannot start: the directory is missing, unreadable or holds no day file. One line says what to do. */
export class ReplayUnavailable extends Data.TaggedError("ReplayUnavailable")<{ readonly message: string }> {}

/** A day file to replay, and how many of its bytes to read (its size when it was listed). */
export interface ReplayFile {
  readonly path: string
  readonly bytes: number
}

/** The stop request ended the replay mid-file (internal: ends the file's stream). */
class Stopped extends Data.TaggedError("Stopped") {}

const reasonOf = (e: PlatformError.PlatformError) =>
  e._tag === "SystemError" ? `${e.reason}${e.description !== undefined ? `: ${e.description}` : ""}` : e.message

/**
 * The `*.jsonl` day files in `dir`, sorted by name, each with its size now: the replay reads no line
 * appended later (with REPLAY_DIR = RAW_DIR the consumer may append to these very files meanwhile).
 * Fails with one line when the directory is missing, unreadable or holds no day file.
 */
export const listReplayFiles = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const where = `the replay directory ${dir} (REPLAY_DIR, by default RAW_DIR)`
    const unavailable = (why: string) => new ReplayUnavailable({ message: `SOURCE=replay cannot start: ${where} ${why}` })
    const info = yield* fs.stat(dir).pipe(
      Effect.mapError((e) =>
        e._tag === "SystemError" && e.reason === "NotFound"
          ? unavailable("does not exist; set REPLAY_DIR to a directory of recorded YYYY-MM-DD.jsonl day files.")
          : unavailable(`cannot be read (${reasonOf(e)}).`)
      )
    )
    if (info.type !== "Directory") return yield* unavailable("is not a directory; set REPLAY_DIR to a directory of recorded YYYY-MM-DD.jsonl day files.")
    const names = yield* fs.readDirectory(dir).pipe(Effect.mapError((e) => unavailable(`cannot be read (${reasonOf(e)}).`)))
    const files: Array<ReplayFile> = []
    for (const name of names.filter((n) => n.endsWith(".jsonl")).sort()) {
      const file = path.join(dir, name)
      const stat = yield* fs.stat(file).pipe(Effect.mapError((e) => unavailable(`holds ${name}, which cannot be read (${reasonOf(e)}).`)))
      if (stat.type === "File") files.push({ path: file, bytes: Number(stat.size) })
    }
    if (files.length === 0) {
      return yield* unavailable("holds no *.jsonl day file; record some first (SOURCE=poll or sim writes them to RAW_DIR), or set REPLAY_DIR.")
    }
    return files as ReadonlyArray<ReplayFile>
  })

const decodeLine = Schema.decodeUnknownEither(TickerEventJson)

/** Why a line is not a contract event, in one short line. */
const describeIssue = (error: ParseResult.ParseError) =>
  ParseResult.ArrayFormatter.formatErrorSync(error)
    .map((issue) => (issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message))
    .join("; ")
    .replace(/\s+/g, " ")
    .slice(0, 300)

export interface ReplaySettings {
  readonly files: ReadonlyArray<ReplayFile>
  /** 0: as fast as publish returns; s > 0: the recorded time between events divided by s. */
  readonly speed: number
}

/**
 * Publishes the recorded events of `files` in file order, line by line (a stream over each file, so
 * memory stays bounded whatever its size), in batches of at most REPLAY_BATCH. Lines that are not
 * contract events are counted, logged once each with file and line number, and skipped; blank lines
 * are ignored. At `speed` 0 each batch goes as soon as the previous one is taken (backpressure); at
 * `speed` s > 0 an event is due `(its timestamp_utc − the first event's) / s` after the replay began,
 * by the Effect `Clock`, and what is due is published before waiting for the next event (an event
 * older than one already published is due at once). A failed publish is reported on /health and
 * retried. A stop request ends the replay at a step boundary, after publishing the batch in hand.
 * Ends with one line: events published, malformed lines skipped, files read.
 */
export const runReplay = <E extends { readonly message: string }>(
  settings: ReplaySettings,
  publish: Publish<E>,
  health: Health,
  fs: FileSystem.FileSystem
) =>
  Effect.gen(function* () {
    const stop = yield* stopSignal
    const { files, speed } = settings
    yield* health.producerStarting([])
    yield* Effect.logInfo(
      `replaying ${files.length} day file(s) (${files[0]?.path} … ${files[files.length - 1]?.path}) ` +
        (speed === 0 ? "as fast as the pipeline takes them" : `at ${speed}× the recorded pace`)
    )
    const symbols = new Set<string>()
    let batch: Array<Tick> = []
    let published = 0
    let malformed = 0
    let filesRead = 0
    /** The first event's instant and when it was due: the origin of the paced timeline. */
    let origin: { readonly micros: number; readonly atMs: number } | undefined

    /** Publishes the batch in hand, retrying a failure until it is taken or a stop is requested. */
    const flush = Effect.gen(function* () {
      while (batch.length > 0) {
        const failure = yield* publish(batch).pipe(Effect.as(Option.none<E>()), Effect.catchAll((e) => Effect.succeed(Option.some(e))))
        if (Option.isNone(failure)) {
          published += batch.length
          batch = []
          yield* health.producerSucceeded(null)
          return
        }
        yield* health.producerFailed(failure.value.message)
        yield* Effect.logWarning(`replay: publishing ${batch.length} event(s) failed: ${failure.value.message}; retrying`)
        if (yield* stop.requested) return
        yield* stop.pause(RETRY_AFTER_MS)
      }
    })

    /** Waits until `tick` is due at `speed`; the batch in hand goes first. Fails with Stopped on a stop. */
    const pace = (tick: Tick) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        if (origin === undefined) {
          origin = { micros: tick.tsMicros, atMs: now }
          return
        }
        // The Clock counts milliseconds: an event due within the current one is due now.
        const dueMs = origin.atMs + Math.floor((tick.tsMicros - origin.micros) / 1000 / speed)
        if (dueMs <= now) return
        yield* flush
        const waitMs = dueMs - now
        if (waitMs > LONG_WAIT_MS) {
          yield* Effect.logInfo(
            `replay: the next event (${tick.event.timestamp_utc}) comes ${Duration.format(Duration.millis(waitMs))} later at REPLAY_SPEED=${speed}; waiting`
          )
        }
        yield* stop.pause(waitMs)
        if (yield* stop.requested) return yield* new Stopped()
      })

    const onLine = (file: string, line: string, index: number) =>
      Effect.gen(function* () {
        if (line.trim() === "") return
        const decoded = decodeLine(line)
        if (Either.isLeft(decoded)) {
          malformed++
          yield* Effect.logWarning(`replay: ${file} line ${index + 1} is not a contract event (${describeIssue(decoded.left)}); skipped`)
          return
        }
        const tick = toTick(decoded.right)
        if (speed > 0) yield* pace(tick)
        if (!symbols.has(tick.symbol)) {
          symbols.add(tick.symbol)
          yield* health.producerSymbols([...symbols])
        }
        batch.push(tick)
        if (batch.length >= REPLAY_BATCH) {
          yield* flush
          if (yield* stop.requested) return yield* new Stopped()
        }
      })

    const replayFile = (file: ReplayFile) =>
      fs.stream(file.path, { bytesToRead: file.bytes }).pipe(
        Stream.decodeText(),
        Stream.splitLines,
        Stream.zipWithIndex,
        Stream.runForEachChunk((lines) =>
          Effect.gen(function* () {
            // also between chunks, so a long run of malformed lines does not hold off a stop
            if (yield* stop.requested) return yield* new Stopped()
            yield* Effect.forEach(lines, ([line, index]) => onLine(file.path, line, index), { discard: true })
          })
        ),
        Effect.zipRight(Effect.sync(() => void filesRead++)),
        Effect.catchTag("SystemError", "BadArgument", (e: PlatformError.PlatformError) =>
          Effect.logError(`replay: cannot read ${file.path} (${reasonOf(e)}); going on with the next file`)
        )
      )

    let stopped = false
    for (const file of files) {
      if (yield* stop.requested) {
        stopped = true
        break
      }
      const outcome = yield* replayFile(file).pipe(
        Effect.as(false),
        Effect.catchTag("Stopped", () => Effect.succeed(true))
      )
      if (outcome) {
        stopped = true
        break
      }
    }
    yield* flush
    const unpublished = batch.length > 0 ? `, ${batch.length} event(s) in hand not published` : ""
    yield* Effect.logInfo(
      `replay ${stopped ? "stopped" : "finished"}: ${published} event(s) published, ${malformed} malformed line(s) skipped, ${filesRead} file(s) read${unpublished}`
    )
  }).pipe(Effect.annotateLogs({ service: "producer", source: "replay" }))

/** The `replay` source over any publish function; fails with ReplayUnavailable when there is nothing to replay. */
export const makeReplaySource = <E extends { readonly message: string }>(publish: Publish<E>) =>
  Effect.gen(function* () {
    const health = yield* Health
    const fs = yield* FileSystem.FileSystem
    const dir = yield* AppConfig.replayDir
    const speed = yield* AppConfig.replaySpeed
    const files = yield* listReplayFiles(dir)
    return MarketSource.of({ name: "replay", run: Effect.suspend(() => runReplay({ files, speed }, publish, health, fs)) })
  })

/** `SOURCE=replay`: recorded day files, published through the Broker. */
export const ReplaySourceLive = Layer.effect(
  MarketSource,
  Effect.flatMap(watchedPublish, (publish) => makeReplaySource(publish))
)
