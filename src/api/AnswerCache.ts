import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Clock, Effect } from "effect"
import { utcDate } from "../domain/Time.js"
import { TickRepo } from "../store/TickRepo.js"

/** A ready answer: its bytes and the headers that go with them (ETag and Cache-Control included, where it has them). */
export interface Answer {
  readonly body: Uint8Array
  readonly contentType: string
  readonly headers: Readonly<Record<string, string>>
}

/** How long an answer is kept after it was built: hot reads for a second, reports for their own max-age. */
export const ANSWER_TTL_MS = { live: 1000, reports: 300_000 } as const
/**
 * Most bytes the kept answers take (bodies, URLs and headers): 8 MiB in all, a small share of a 512 MB
 * instance. Hot reads (/trades/*, /candles) get 6 MiB, about 30 of the largest answers (limit=1000,
 * ~200 KB); the reports 2 MiB, about 60 year-long CSVs. Past it the oldest answers go first; an
 * answer larger than its whole budget is never kept.
 */
export const ANSWER_MAX_BYTES = { live: 6 * 1024 * 1024, reports: 2 * 1024 * 1024 } as const
export type AnswerPool = keyof typeof ANSWER_TTL_MS

interface Entry {
  readonly answer: Answer
  readonly version: string
  readonly expires: number
  readonly bytes: number
}

const answerBytes = (url: string, answer: Answer) =>
  answer.body.length + url.length + Object.entries(answer.headers).reduce((n, [k, v]) => n + k.length + v.length, 0)

/**
 * Answers kept by URL for `ttlMs`, at most `maxBytes` in all. The TTL is fixed, so insertion order is
 * expiry order: the oldest entry is always first. Expired answers are freed by one timer (which never
 * keeps the process alive), whether or not their URL is asked again.
 */
const makeStore = (ttlMs: number, maxBytes: number) => {
  const entries = new Map<string, Entry>()
  let held = 0
  let timer: ReturnType<typeof setTimeout> | undefined

  const drop = (url: string, entry: Entry) => {
    entries.delete(url)
    held -= entry.bytes
  }
  /** Frees every answer expired at `now`: they lead the map. */
  const sweep = (now: number) => {
    for (const [url, entry] of entries) {
      if (entry.expires > now) break
      drop(url, entry)
    }
  }
  const arm = () => {
    if (timer !== undefined) return
    const oldest = entries.values().next()
    if (oldest.done === true) return
    timer = setTimeout(onTimer, Math.max(0, oldest.value.expires - Date.now()) + 1)
    timer.unref()
  }
  const onTimer = () => {
    timer = undefined
    sweep(Date.now())
    arm()
  }

  return {
    /** The answer kept for `url` at `version`, if it has not expired. */
    get: (url: string, version: string): Answer | undefined => {
      const entry = entries.get(url)
      if (entry === undefined) return undefined
      if (entry.version === version && entry.expires > Date.now()) return entry.answer
      drop(url, entry) // built from older data (or the wall clock stepped back)
      return undefined
    },
    /** Keeps `answer` for `url` at `version`, if it fits in `maxBytes` at all. */
    set: (url: string, version: string, answer: Answer) => {
      const now = Date.now()
      sweep(now)
      const previous = entries.get(url)
      if (previous !== undefined) drop(url, previous) // re-inserted at the end: order stays expiry order
      const bytes = answerBytes(url, answer)
      if (bytes > maxBytes) return
      for (const [oldest, entry] of entries) {
        if (held + bytes <= maxBytes) break
        drop(oldest, entry)
      }
      entries.set(url, { answer, version, expires: now + ttlMs, bytes })
      held += bytes
      arm()
    },
    size: () => ({ entries: entries.size, bytes: held }),
    clear: () => {
      clearTimeout(timer)
      timer = undefined
      entries.clear()
      held = 0
    }
  }
}

/**
 * The answers of the read endpoints, kept by request URL and the store's data version: a request
 * for a URL answered since the last write anywhere to the database gets the same bytes without a
 * query. It runs inside the handlers, behind every protection (API keys, rate limit, CORS, headers),
 * so it answers every client the same way whether they are on or off. The reports' answers also
 * carry the UTC date (their window ends today) and their ETag, so a conditional request for a kept
 * report is answered 304 without building it.
 */
export class AnswerCache extends Effect.Service<AnswerCache>()("api/AnswerCache", {
  scoped: Effect.gen(function* () {
    const repo = yield* TickRepo
    const stores = {
      live: makeStore(ANSWER_TTL_MS.live, ANSWER_MAX_BYTES.live),
      reports: makeStore(ANSWER_TTL_MS.reports, ANSWER_MAX_BYTES.reports)
    }
    let hits = 0
    yield* Effect.addFinalizer(() => Effect.sync(() => Object.values(stores).forEach((store) => store.clear())))

    const versionOf = (pool: AnswerPool) =>
      pool === "live"
        ? Effect.map(Effect.orDie(repo.dataVersion), String)
        : Effect.zipWith(Effect.orDie(repo.dataVersion), Clock.currentTimeMillis, (v, now) => `${v}@${utcDate(now)}`)

    /**
     * The answer to the request being handled: kept, or built by `build` (then kept). The version is
     * read before `build` runs, so a kept answer is never older than its version says.
     */
    const answer = <E, R>(pool: AnswerPool, build: Effect.Effect<Answer, E, R>) =>
      Effect.gen(function* () {
        const { url } = yield* HttpServerRequest.HttpServerRequest
        const version = yield* versionOf(pool)
        const kept = stores[pool].get(url, version)
        if (kept !== undefined) {
          hits++
          return kept
        }
        const built = yield* build
        stores[pool].set(url, version, built)
        return built
      })

    /** Answers held now, the bytes they take and how many requests they answered, for tests and metrics. */
    const size = () => {
      const live = stores.live.size()
      const reports = stores.reports.size()
      return { entries: live.entries + reports.entries, bytes: live.bytes + reports.bytes, hits, live, reports }
    }

    return {
      answer,
      size,
      /** Keeps or looks up an answer directly, as `answer` does (tests). */
      remember: (pool: AnswerPool, url: string, version: string, kept: Answer) => stores[pool].set(url, version, kept),
      kept: (pool: AnswerPool, url: string, version: string) => stores[pool].get(url, version)
    } as const
  })
}) {}

/** An answer as a response. */
export const toResponse = (answer: Answer, status = 200) =>
  HttpServerResponse.uint8Array(answer.body, { status, contentType: answer.contentType, headers: answer.headers })

const encoder = new TextEncoder()
/** A JSON answer from its text. */
export const jsonAnswer = (json: string, headers: Readonly<Record<string, string>> = {}): Answer => ({
  body: encoder.encode(json),
  contentType: "application/json",
  headers
})

/** A page of the newest rows (`/trades/latest`, `/agg-trades/latest`) as a response, through the live answers. */
export const latestResponse = <E, R>(cache: AnswerCache, page: Effect.Effect<{ readonly json: string }, E, R>) =>
  Effect.map(
    cache.answer("live", Effect.map(Effect.orDie(page), (p) => jsonAnswer(p.json))),
    (answer) => toResponse(answer)
  )
