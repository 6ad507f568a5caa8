import { FileSystem, Path } from "@effect/platform"
import { NodeFileSystem, NodePath } from "@effect/platform-node"
import { Context, Effect, Either, Layer, Option, Ref, Schema } from "effect"
import * as AppConfig from "../Config.js"
import { isoInstant } from "../domain/Time.js"

/** Until when Binance refuses this IP, and why: 429 (slow down) or 418 (IP ban). */
export interface RateLimitEntry {
  /** Epoch ms: no request to Binance before this instant. */
  readonly until: number
  readonly status: 429 | 418
}

/**
 * Where the end of a Binance rate limit is kept so that it outlives the process: a restart inside a
 * ban must not poll (repeat offenders are banned for longer, up to 3 days). `save` only ever extends
 * the stored end; neither operation fails, a storage problem is logged and means "no ban known".
 */
export class RateLimitStore extends Context.Tag("binance/RateLimitStore")<
  RateLimitStore,
  {
    readonly load: Effect.Effect<Option.Option<RateLimitEntry>>
    readonly save: (entry: RateLimitEntry) => Effect.Effect<void>
  }
>() {}

/** The entry that ends later (a 418 wins a tie): saving never shortens a known ban. */
export const laterEntry = (stored: Option.Option<RateLimitEntry>, next: RateLimitEntry): RateLimitEntry =>
  Option.match(stored, {
    onNone: () => next,
    onSome: (s) => (s.until > next.until || (s.until === next.until && s.status === 418) ? s : next)
  })

/** The file's name, beside the database file (STORAGE_PATH). */
export const RATE_LIMIT_FILE = "binance-rate-limit.json"

/** Latest instant a JS Date can show (±8.64e15 ms): a larger `until` is not a time. */
const MAX_DATE_MS = 8.64e15

const RateLimitFile = Schema.parseJson(
  Schema.Struct({
    until: Schema.Number.pipe(Schema.between(0, MAX_DATE_MS)),
    status: Schema.Literal(429, 418)
  })
)
const decodeFile = Schema.decodeUnknownEither(RateLimitFile)

/** A whole ms, rounded up (a fractional Retry-After must not end early), and always a valid date. */
const wholeMillis = (until: number) => Math.min(Math.max(Math.ceil(until), 0), MAX_DATE_MS)

const fileText = (entry: RateLimitEntry) => {
  const until = wholeMillis(entry.until)
  return `${JSON.stringify({ until, until_utc: isoInstant(until), status: entry.status })}\n`
}

/** The store as a small JSON file at `file`, written atomically (temp file, fsync, rename). */
const makeFileStore = (file: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    // one writer at a time in this process, so a read-merge-write never loses a concurrent save
    const lock = yield* Effect.makeSemaphore(1)

    const none = Effect.succeed(Option.none<RateLimitEntry>())
    const ignored = (why: string) => Effect.logWarning(`${why}; assuming no ban`).pipe(Effect.zipRight(none))

    /** What the file holds; `warn`: whether an unreadable or malformed file is logged. */
    const read = (warn: boolean): Effect.Effect<Option.Option<RateLimitEntry>> =>
      fs.readFileString(file).pipe(
        Effect.flatMap((text) =>
          Either.match(decodeFile(text), {
            onRight: (entry) => Effect.succeed(Option.some<RateLimitEntry>(entry)),
            onLeft: () =>
              warn
                ? ignored(`the Binance rate-limit file ${file} does not hold {"until": <epoch ms>, "status": 429 or 418}`)
                : none
          })
        ),
        Effect.catchAll((e) =>
          // NotFound is the usual case: no rate limit was ever recorded here
          warn && !(e._tag === "SystemError" && e.reason === "NotFound")
            ? ignored(`cannot read the Binance rate-limit file ${file} (${e.message})`)
            : none
        )
      )

    const write = (entry: RateLimitEntry) =>
      Effect.gen(function* () {
        yield* fs.makeDirectory(path.dirname(file), { recursive: true })
        const temp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
        yield* Effect.scoped(
          Effect.gen(function* () {
            const handle = yield* fs.open(temp, { flag: "w", mode: 0o644 })
            yield* handle.writeAll(new TextEncoder().encode(fileText(entry)))
            yield* handle.sync
          })
        ).pipe(
          Effect.zipRight(fs.rename(temp, file)),
          Effect.tapError(() => fs.remove(temp).pipe(Effect.orElse(() => Effect.void)))
        )
      })

    return RateLimitStore.of({
      load: read(true),
      save: (entry) =>
        lock
          .withPermits(1)(
            Effect.flatMap(read(false), (stored) => {
              const merged = laterEntry(stored, entry)
              return Option.isSome(stored) && stored.value === merged ? Effect.void : write(merged)
            })
          )
          .pipe(
            Effect.catchAll((e) =>
              Effect.logWarning(
                `cannot record the Binance rate limit (HTTP ${entry.status}, until ${isoInstant(wholeMillis(entry.until))}) in ${file} (${e.message}); a restart before then would not know about it`
              )
            ),
            // a stop signal must not cut the write short
            Effect.uninterruptible
          )
    })
  })

/**
 * The store as `binance-rate-limit.json` beside the database (the directory of STORAGE_PATH), so a
 * restarted process, or another command on the same data, sees a ban an earlier run received.
 */
export const RateLimitStoreLive = Layer.effect(
  RateLimitStore,
  Effect.gen(function* () {
    const path = yield* Path.Path
    const storagePath = yield* AppConfig.storagePath
    return yield* makeFileStore(path.join(path.dirname(storagePath), RATE_LIMIT_FILE))
  })
).pipe(Layer.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer)))

/** The store in memory, for tests: it outlives one client but not the process. */
export const makeRateLimitStoreMemory = (initial: Option.Option<RateLimitEntry> = Option.none()) =>
  Effect.map(Ref.make(initial), (stored) =>
    RateLimitStore.of({
      load: Ref.get(stored),
      save: (entry) => Ref.update(stored, (s) => Option.some(laterEntry(s, entry)))
    })
  )

/** A fresh in-memory store each time the layer is built. */
export const RateLimitStoreMemory = Layer.effect(RateLimitStore, makeRateLimitStoreMemory())
