import { FileSystem, Path } from "@effect/platform"
import { Array as Arr, Effect } from "effect"
import { eventKey, type TickerEvent } from "../domain/Ticker.js"
import { SinkError, TickSink } from "./TickSink.js"

/** How much of an existing day file is read back to recognise replays after a restart. */
const TAIL_BYTES = 8 * 1024 * 1024
/** Identities remembered per day file; older ones fall out first. */
const MAX_REMEMBERED = 500_000
/** Day files whose identities are kept in memory (today, yesterday and a late straggler). */
const MAX_DAYS = 3

const identity = (e: TickerEvent) => `${e.symbol}|${eventKey(e).tsMicros}`
const dayOf = (e: TickerEvent) => new Date(Math.floor(eventKey(e).tsMicros / 1000)).toISOString().slice(0, 10)

/**
 * The raw (bronze) log: `RAW_DIR/YYYY-MM-DD.jsonl` by the event's UTC day, one contract event per
 * line, appended. Replays of recently written events (Kafka redelivery after a crash) are recognised
 * and not appended again; SQLite remains the exact, queryable store.
 */
export const makeJsonlSink = (rawDir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    yield* fs.makeDirectory(rawDir, { recursive: true })
    const seen = new Map<string, Set<string>>()

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
        const ids = new Set<string>()
        const tail = yield* readTail(file)
        // A process killed mid-write can leave a torn last line: end it, so the next line stays whole.
        if (tail.length > 0 && !tail.endsWith("\n")) yield* fs.writeFileString(file, "\n", { flag: "a" })
        for (const line of tail.split("\n")) {
          if (line.length === 0) continue
          try {
            const parsed = JSON.parse(line) as TickerEvent
            ids.add(identity(parsed))
          } catch {
            // a torn last line from a crash: it is not an identity we can match
          }
        }
        seen.set(day, ids)
        for (const old of [...seen.keys()].sort().slice(0, Math.max(0, seen.size - MAX_DAYS))) seen.delete(old)
        return ids
      })

    const writeBatch = (events: ReadonlyArray<TickerEvent>) =>
      Effect.forEach(
        Object.entries(Arr.groupBy(events, dayOf)),
        ([day, dayEvents]) =>
          Effect.gen(function* () {
            const file = path.join(rawDir, `${day}.jsonl`)
            const ids = yield* remembered(day, file)
            const fresh = new Set<string>()
            const lines: Array<string> = []
            for (const event of dayEvents) {
              const id = identity(event)
              if (ids.has(id) || fresh.has(id)) continue
              fresh.add(id)
              lines.push(JSON.stringify(event))
            }
            if (lines.length === 0) return
            yield* fs.writeFileString(file, `${lines.join("\n")}\n`, { flag: "a" })
            for (const id of fresh) ids.add(id)
            for (const id of ids) {
              if (ids.size <= MAX_REMEMBERED) break
              ids.delete(id)
            }
          }),
        { discard: true }
      ).pipe(Effect.mapError((cause) => new SinkError({ sink: "jsonl", cause })))

    return TickSink.of({ name: "jsonl", writeBatch })
  })
